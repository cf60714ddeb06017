"""``fedzoo attack`` and ``fedzoo metric`` end to end through the CLI, and bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pytest

from fedzoo.errors import ConfigError
from fedzoo_cli.main import main

# A tiny but complete FZooS round at d = 784 (small surrogate sizes keep it fast).
SMALL = [
    "--local-steps",
    "2",
    "--rff-features",
    "100",
    "--gp-history",
    "40",
    "--gp-fit-points",
    "30",
    "--sync-points",
    "5",
    "--explore-points",
    "2",
    "--init-points",
    "4",
    "--rgf-directions",
    "5",
]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "fedzoo: error:" in err
    return err


@pytest.mark.torch
def test_attack_end_to_end_on_reference_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("mlxtend")
    from fedzoo_attack.models import load_client_models, reference_weights_path

    cache = tmp_path / "cache"
    monkeypatch.setenv("FEDZOO_CACHE", str(cache))
    out = tmp_path / "attack"
    rc = main(
        [
            "attack",
            "--clients",
            "10",
            "--portion",
            "0.5",
            "--epsilon",
            "0.3",
            "--images",
            "1",
            "--method",
            "fzoos-paper,fedzo",
            "--rounds",
            "2",
            "--seed",
            "0",
            "--budget",
            "100000",
            "--out",
            str(out),
            *SMALL,
        ]
    )
    assert rc == 0
    cap = capsys.readouterr()
    assert "fzoos-paper" in cap.out and "fedzo" in cap.out and "q to 90%" in cap.out
    assert "[fzoos-paper] image 1/1" in cap.err  # progress per image on stderr
    # The committed reference weights were used: nothing trained, nothing cached.
    assert "client 1/10" not in cap.err and "test acc own classes" not in cap.err
    assert not (cache / "models").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problem"]["dataset"] == "mnist5k" and summary["problem"]["dim"] == 784
    assert len(summary["images"]) == 1 and summary["budget"] == 100000
    assert summary["aliases"] == {} and summary["method_options"] == {}
    reference = load_client_models(reference_weights_path(0.5)).meta
    assert summary["problem"]["models"]["train"] == reference["train"]
    assert summary["problem"]["models"]["fingerprint"] == reference["fingerprint"]
    # Which images were eligible (docs/design.md §7 "every client model" is `all`, empty at P < 1).
    assert summary["problem"]["selection"] == "known"
    assert "every client model trained on the image's class" in summary["problem"][
        "selection_rule"
    ]
    assert "selection known" in cap.err
    assert summary["versions"]["torch"]
    # docs/design.md §6: attack.csv and history.csv in --out, every method, with a method column.
    every = _csv(out / "attack.csv")
    assert [r["method"] for r in every] == ["fzoos-paper", "fedzo"]
    every_hist = _csv(out / "history.csv")
    assert {h["method"] for h in every_hist} == {"fzoos-paper", "fedzo"}
    assert {h["image"] for h in every_hist} == {str(summary["images"][0])}
    for method in ("fzoos-paper", "fedzo"):
        res = summary["results"][method]
        assert res["config"]["method"] == method and res["config"]["rff-features"] == 100
        rows = _csv(out / method / "attack.csv")
        assert len(rows) == 1
        for col in (
            "image",
            "success",
            "queries_to_success",
            "linf",
            "l2",
            "fooled_fraction",
            "final_queries",
        ):
            assert col in rows[0]
        assert rows[0] == {k: v for k, v in every[["fzoos-paper", "fedzo"].index(method)].items()
                           if k != "method"}
        assert rows[0]["target"] == ""  # untargeted
        hist = _csv(out / method / "history.csv")
        assert [h["round"] for h in hist] == [str(r) for r in range(len(hist))]
        assert hist == [{k: v for k, v in h.items() if k != "method"} for h in every_hist
                        if h["method"] == method]
        assert hist[-1]["queries"] == rows[0]["final_queries"]
        assert 0 < float(rows[0]["linf"]) <= 0.3 + 1e-6
        assert int(rows[0]["final_queries"]) > 0
    assert (out / "attack.png").stat().st_size > 0


def test_metric_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    out = tmp_path / "metric"
    rc = main(
        [
            "metric",
            "--clients",
            "3",
            "--portion",
            "0.5",
            "--metric",
            "f1",
            "--method",
            "fzoos,fedzo",
            "--rounds",
            "2",
            "--seeds",
            "0,1",
            "--out",
            str(out),
            "--workers",
            "1",
            *SMALL,
        ]
    )
    assert rc == 0
    cap = capsys.readouterr()
    assert "1 - f1" in cap.out and "[fedzo] seed 1" in cap.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "f1" and set(summary["results"]) == {"fzoos", "fedzo"}
    for method in ("fzoos", "fedzo"):
        rows = _csv(out / method / "metric.csv")
        assert [r["seed"] for r in rows] == ["0", "1"]
        for r in rows:
            assert 0.0 <= float(r["final_value"]) <= 1.0
        assert summary["results"][method]["value_at_budget"] == pytest.approx(
            [float(r["value_at_budget"]) for r in rows]
        )
        hist = _csv(out / method / "history.csv")
        assert {h["seed"] for h in hist} == {"0", "1"}
        # the top-level files hold the same rows, with a method column
        assert rows == [{k: v for k, v in r.items() if k != "method"}
                        for r in _csv(out / "metric.csv") if r["method"] == method]
        assert hist == [{k: v for k, v in h.items() if k != "method"}
                        for h in _csv(out / "history.csv") if h["method"] == method]
    assert [r["method"] for r in _csv(out / "metric.csv")] == ["fzoos"] * 2 + ["fedzo"] * 2
    assert list(_csv(out / "history.csv")[0])[:4] == ["method", "seed", "round", "queries"]
    assert (out / "metric.png").stat().st_size > 0


@pytest.mark.torch
def test_targeted_attack_on_reference_weights_is_judged_by_the_target_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("mlxtend")
    from fedzoo_attack.data import load_dataset
    from fedzoo_attack.models import load_reference_models, predict_logits

    monkeypatch.setenv("FEDZOO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "targeted"
    image, eps = 867, 0.3  # label 8, target 9: the ensemble is fooled within a few rounds
    rc = main(["attack", "--clients", "10", "--portion", "0.5", "--epsilon", str(eps),
               "--image-ids", str(image), "--targeted", "--method", "fedzo",
               "--local-steps", "2", "--rounds", "6", "--budget", "5000", "--seed", "0",
               "--no-plot", "--out", str(out)])
    assert rc == 0
    assert "targeted" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["targeted"] is True and summary["images"] == [image]
    assert summary["problem"]["selection"] == "given"
    (row,) = _csv(out / "fedzo" / "attack.csv")
    label = int(row["label"])
    assert int(row["target"]) == (label + 1) % 10
    # The success rule, checked independently on the saved point: the clients' averaged
    # logits predict the target (not merely some class other than the label).
    data = load_dataset("mnist5k")
    models = load_reference_models(0.5)
    clean = data.x_test[image]
    assert label == int(data.y_test[image])

    def averaged_logits(x: np.ndarray) -> np.ndarray:
        adv = np.clip(clean + eps * (2 * x.reshape(clean.shape) - 1), 0, 1)[None]
        return np.mean([predict_logits(m, adv.astype(np.float32))[0] for m in models], axis=0)

    assert int(averaged_logits(np.full(clean.size, 0.5)).argmax()) == label  # clean: right
    points = np.load(out / "fedzo" / "points.npz")
    assert points["image"].tolist() == [image]
    predicted = int(averaged_logits(points["x"][0]).argmax())
    assert int(row["predicted"]) == predicted
    assert row["success"] == "1" and predicted == (label + 1) % 10
    assert int(row["queries_to_success"]) <= 5000
    hist = _csv(out / "fedzo" / "history.csv")
    assert [h["success"] for h in hist] == ["0"] * (len(hist) - 1) + ["1"]
    assert float(hist[-1]["ensemble_margin"]) < 0 < float(hist[0]["ensemble_margin"])


def test_metric_runs_never_import_torch(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    code = (
        "import sys\n"
        "from fedzoo_cli.main import main\n"
        f"rc = main(['metric', '--clients', '3', '--portion', '0.5', '--method', 'fedzo', "
        f"'--rounds', '1', '--local-steps', '1', '--seeds', '0', '--workers', '1', "
        f"'--out', {str(tmp_path / 'metric')!r}])\n"
        "assert rc == 0, rc\n"
        "print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_ABSENT')\n"
    )
    env = {**os.environ, "FEDZOO_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert done.returncode == 0, done.stderr
    assert "TORCH_ABSENT" in done.stdout
    versions = json.loads((tmp_path / "metric" / "summary.json").read_text())["versions"]
    try:
        expected: str | None = version("torch")
    except PackageNotFoundError:
        expected = None
    assert versions.get("torch") == expected  # recorded without importing torch


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epsilon", "0"], "epsilon must be a positive"),
        (["--epsilon", "-0.1"], "epsilon must be a positive"),
        (["--portion", "0"], "portion must lie in (0, 1]"),
        (["--portion", "1.5"], "portion must lie in (0, 1]"),
        (["--portion", "0.05"], "0 classes per client"),
        (["--method", "fzoos,bogus"], "bogus"),
        (["--method", "fo"], "fo"),
        (["--images", "0"], "--images must be >= 1"),
        (["--budget", "0"], "--budget must be a positive"),
        (["--lr", "-1"], "Option --lr = -1.0"),
        (["--dataset", "mnist"], "--data-dir"),
        (["--dataset", "mnist", "--data-dir", "/nonexistent/mnist"], "does not exist"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent/c10"], "does not exist"),
    ],
)
def test_attack_bad_input(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _fails(["attack", "--out", str(tmp_path / "o"), *extra], capsys)
    assert message in err
    assert not (tmp_path / "o").exists()  # nothing written, nothing trained


def test_attack_rejects_wrong_image_shapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "mnist"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("test", 10)):
        np.save(data / f"x_{split}.npy", rng.integers(0, 256, (n, 27, 27), dtype=np.uint8))
        np.save(data / f"y_{split}.npy", rng.integers(0, 10, n))
    err = _fails(
        ["attack", "--dataset", "mnist", "--data-dir", str(data), "--out", str(tmp_path / "o")],
        capsys,
    )
    assert "28 x 28" in err and "(20, 27, 27)" in err


def test_attack_rejects_bad_image_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("mlxtend")
    err = _fails(["attack", "--image-ids", "3,100000", "--out", str(tmp_path / "o")], capsys)
    assert "100000" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--portion", "-0.5"], "portion must lie in (0, 1]"),
        (["--seeds", "0,x"], "--seeds must be comma-separated integers"),
        (["--seeds", "1,1"], "distinct"),
        (["--method", "nope"], "nope"),
        (["--engine", "flower"], "not supported for metric"),
        (["--radius", "0"], "--radius"),
    ],
)
def test_metric_bad_input(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _fails(["metric", "--out", str(tmp_path / "o"), *extra], capsys)
    assert message in err


def test_attack_prepare_trains_caches_and_attack_uses_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("mlxtend")
    monkeypatch.setenv("FEDZOO_CACHE", str(tmp_path / "cache"))
    assert main(["attack", "prepare", "--clients", "2", "--portions", "0.5", "--epochs", "1"]) == 0
    out, err = capsys.readouterr()
    weights = tmp_path / "cache" / "models" / "mnist5k-n2-p0.5-s0-cnn.npz"
    assert str(weights) in out and weights.is_file()
    assert "client 2/2" in err and "s, test acc own classes" in err and "[" + "#" * 20 + "]" in err
    assert main(["attack", "--clients", "2", "--portion", "0.5", "--images", "1",
                 "--method", "fedzo", "--rounds", "1", "--no-plot",
                 "--out", str(tmp_path / "o")]) == 0
    assert "client 1/2" not in capsys.readouterr().err  # loaded, not trained again
    assert _fails(["attack", "prepare", "--portions", "0.5,x"], capsys).count("--portions") == 1


@pytest.mark.torch
def test_digits_attack_trains_on_demand_and_runs_fedsquare_and_fedzo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """scikit-learn's 8 x 8 digits end to end: client CNNs trained on demand into the
    cache, images drawn, fedsquare's squares drawn on the 8 x 8 image, every method
    within the budget; `attack prepare --dataset digits` writes where the attack looks."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    cache = tmp_path / "cache"
    monkeypatch.setenv("FEDZOO_CACHE", str(cache))
    out = tmp_path / "digits"
    argv = ["attack", "--dataset", "digits", "--clients", "2", "--portion", "0.5",
            "--epsilon", "0.3", "--images", "1", "--method", "fedsquare,fedzo",
            "--local-steps", "1", "--budget", "300", "--report-budgets", "100,300",
            "--seed", "0", "--no-plot", "--out", str(out)]
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert "client 2/2" in cap.err  # trained here ...
    weights = cache / "models" / "digits-n2-p0.5-s0-cnn.npz"
    assert weights.is_file()  # ... and cached
    summary = json.loads((out / "summary.json").read_text())
    problem = summary["problem"]
    assert problem["dataset"] == "digits" and problem["image_shape"] == [8, 8]
    assert problem["dim"] == 64 and problem["selection"] == "known"
    assert summary["methods"] == ["fedsquare", "fedzo"] and summary["budget"] == 300
    assert summary["results"]["fedsquare"]["config"]["square-shape"] == "8x8"
    assert summary["results"]["fedsquare"]["config"]["square-iterations"] == 150  # 300 / 2
    (image,) = summary["images"]
    for method in ("fedsquare", "fedzo"):
        (row,) = _csv(out / method / "attack.csv")
        assert int(row["image"]) == image and 0 < int(row["final_queries"]) <= 300
        assert float(row["linf"]) <= 0.3 + 1e-6
        assert set(summary["results"][method]["success_rate_at"]) == {"100", "300"}
    assert np.load(out / "fedsquare" / "points.npz")["x"].shape == (1, 64)
    # `attack prepare --dataset digits` writes the same file; the attack then loads it.
    assert main(["attack", "prepare", "--dataset", "digits", "--clients", "2",
                 "--portions", "0.5"]) == 0  # deterministic: the same models
    assert str(weights) in capsys.readouterr().out
    assert main([*argv[:-1], str(tmp_path / "again")]) == 0
    assert "client 1/2" not in capsys.readouterr().err
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["images"] == [image]


def test_fzoos_in_an_attack_runs_fzoos_vertex_with_its_own_defaults_unless_flagged() -> None:
    import argparse

    from fedzoo_cli.attack import attack_methods

    def ns(**kw):
        return argparse.Namespace(method=",".join(kw.pop("methods")), local_steps=kw.pop("local_steps", None))

    methods, aliases, options = attack_methods(["fzoos", "fedzo"], ns(methods=["fzoos", "fedzo"]))
    assert methods == ["fzoos-vertex", "fedzo"] and aliases == {"fzoos": "fzoos-vertex"}
    assert options == {"fzoos-vertex": {"local-steps": 5}}  # fedzo keeps the shared default
    _, _, options = attack_methods(["fzoos"], ns(methods=["fzoos"], local_steps=8))
    assert options == {}  # a flag wins over the attack's default
    methods, aliases, options = attack_methods(["fzoos-paper"], ns(methods=["fzoos-paper"]))
    assert methods == ["fzoos-paper"] and aliases == {} and options == {}  # the gradient FZooS
    with pytest.raises(ConfigError, match="fzoos runs fzoos-vertex"):
        attack_methods(["fzoos", "fzoos-vertex"], ns(methods=["fzoos", "fzoos-vertex"]))


def test_attack_records_what_fzoos_ran_as(tmp_path, capsys) -> None:
    out = tmp_path / "a"
    assert main(["attack", "--portion", "0.5", "--epsilon", "0.3", "--images", "1", "--method", "fzoos",
                 "--budget", "300", "--seed", "0", "--out", str(out), "--no-plot"]) == 0
    cap = capsys.readouterr()
    assert "fzoos: in an attack this runs fzoos-vertex" in cap.err and "[fzoos-vertex] image 1/1" in cap.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["aliases"] == {"fzoos": "fzoos-vertex"}
    assert summary["method_options"] == {"fzoos-vertex": {"local-steps": 5}}
    res = summary["results"]["fzoos-vertex"]
    assert res["config"]["local-steps"] == 5 and res["config"]["square-shape"] == "28x28"
    assert max(int(r["queries"]) for r in _csv(out / "history.csv")) <= 300  # the hard budget


def test_with_only_a_budget_the_budget_not_the_round_cap_ends_the_run() -> None:
    from fedzoo.limits import MAX_ROUNDS
    from fedzoo_cli.attack import ROUNDS_CAP_WITH_BUDGET, rounds_for_budget

    # fedsquare at lambda = 1 with 10 clients spends 10 queries a round: 20 000 queries
    # need 2 000 rounds (a cap of 1 000 stopped it at 10 010 before)
    assert rounds_for_budget(20000) == 20000
    assert rounds_for_budget(300) == ROUNDS_CAP_WITH_BUDGET
    assert rounds_for_budget(10**9) == MAX_ROUNDS


@pytest.mark.parametrize("command", ["attack", "metric"])
def test_the_commands_use_the_budget_rounds_unless_rounds_is_given(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring, not the helper: the config ``fedzoo attack`` / ``metric`` builds runs
    max(1000, budget) rounds with only ``--budget``, and ``--rounds`` when given (the run is
    stopped right after the config is built, before any data or model is loaded)."""
    import fedzoo_cli.attack as cli_attack

    built = []
    real = cli_attack.config_from_args

    class Built(Exception):
        pass

    def spy(*args, **kwargs):
        built.append(real(*args, **kwargs))
        raise Built

    monkeypatch.setattr(cli_attack, "config_from_args", spy)
    for extra, rounds in (([], 20000), (["--rounds", "7"], 7)):
        with pytest.raises(Built):
            main([command, "--method", "fedsquare" if command == "attack" else "fedzo", "--budget", "20000",
                  "--out", str(tmp_path / "out"), *extra])
        assert built[-1].rounds == rounds
