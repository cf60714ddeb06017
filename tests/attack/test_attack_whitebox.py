"""simulations/attack/whitebox_reference.py on a tiny digits run: the data set, models and
images come from the run's summary.json, and whitebox.json is written next to it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "simulations" / "attack" / "whitebox_reference.py"


@pytest.mark.torch
def test_whitebox_reference_reads_the_data_set_from_the_run_and_writes_whitebox_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from fedzoo_cli.main import main

    monkeypatch.setenv("FEDZOO_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["attack", "--dataset", "digits", "--clients", "2", "--portion", "0.5",
                 "--epsilon", "0.3", "--targeted", "--images", "2", "--method", "fedsquare",
                 "--budget", "20", "--seed", "0", "--no-plot", "--out", str(run)]) == 0
    images = json.loads((run / "summary.json").read_text())["images"]
    capsys.readouterr()
    spec = importlib.util.spec_from_file_location("whitebox_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    assert module.main(["--steps", "30", str(run)]) == 0
    line = capsys.readouterr().out.strip()
    r = json.loads((run / "whitebox.json").read_text())
    assert line == (f"run: white-box attackable {r['attackable']}/2 "
                    f"(images not attackable: {r['not_attackable']})")
    assert r["dataset"] == "digits" and r["images"] == images and r["total"] == 2
    assert r["targeted"] is True and r["epsilon"] == 0.3 and r["steps"] == 30
    assert set(r["not_attackable"]) <= set(images)
    assert r["attackable"] == 2 - len(r["not_attackable"])
    # --out puts it elsewhere (the grid keeps one per setting).
    assert module.main(["--steps", "30", "--out", str(tmp_path / "s" / "wb.json"), str(run)]) == 0
    assert json.loads((tmp_path / "s" / "wb.json").read_text())["images"] == images
