"""The attack outside this process: each client's CNN behind its ClientApp in a Flower
simulation (real flwr processes), with the in-process results. (Attack specs, and one
client behind an oracle process over gRPC without Flower: test_attack_oracle.py.)"""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("flwr")

from fedzoo_cli.main import main  # noqa: E402

IMAGE = 853  # a test image the reference models (N=10, P=0.7) classify correctly


def _rows(path):
    with open(path) as fh:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(fh)]


@pytest.mark.slow
def test_attack_through_the_flower_app_gives_the_in_process_outcome(tmp_path, capsys):
    common = ["attack", "--clients", "10", "--portion", "0.7", "--epsilon", "0.3",
              "--image-ids", str(IMAGE), "--method", "fzoos,fedzo", "--rounds", "30",
              "--local-steps", "4", "--budget", "1200", "--seed", "0", "--no-plot"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--engine", "flower", "--out", str(tmp_path / "flower")]) == 0
    for method in ("fzoos-vertex", "fedzo"):  # fzoos runs fzoos-vertex in an attack
        for name in ("history.csv", "attack.csv"):
            local = _rows(tmp_path / "local" / method / name)
            remote = _rows(tmp_path / "flower" / method / name)
            if name == "attack.csv":  # per-image timing columns aside
                local = [{k: v for k, v in r.items() if "_s" not in k} for r in local]
                remote = [{k: v for k, v in r.items() if "_s" not in k} for r in remote]
            assert local == remote, (method, name)
    # the Flower runs stopped before a round that could pass the budget (1200 queries,
    # a hard limit), not at the 30-round cap
    run = tmp_path / "flower" / "flower" / "fzoos-vertex" / f"image{IMAGE}"
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert int(rows[-1]["queries"]) <= 1200 and len(rows) < 31
    assert np.load(run / "points.npy").shape == (len(rows), 784)
