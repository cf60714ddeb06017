"""Run-config ``x0`` and ``weights`` for ``problem = "custom"``: parsed, checked, used."""

from __future__ import annotations

import numpy as np
import pytest

from fedzoo.errors import ConfigError
from fedzoo_server.app import run_server
from fedzoo_server.settings import parse_run_config, start_point
from tests.flower.conftest import SMALL, make_grid

CUSTOM = {**SMALL, "problem": "custom", "objective-factory": "tests.flower.fixtures:shifted_sphere"}


@pytest.mark.parametrize(
    "x0, weights",
    [("0.3", "1,1,2"), (",".join(["0.3"] * 10), "[1, 1, 2]"), (str([0.3] * 10), " 0.25, 0.25 ,0.5 ")],
)
def test_x0_and_weights_as_comma_separated_numbers_or_json(x0, weights):
    s = parse_run_config({**CUSTOM, "x0": x0, "weights": weights})
    x, w = start_point(s)
    assert np.array_equal(x, np.full(10, 0.3)) and np.allclose(w, [0.25, 0.25, 0.5])


def test_empty_keeps_the_box_centre_and_uniform_weights():
    x, w = start_point(parse_run_config(CUSTOM))
    assert np.array_equal(x, np.full(10, 0.5)) and np.allclose(w, 1 / 3)


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"x0": "0.1,0.2"}, r"'x0' = '0.1,0.2' has 2 numbers; expected 10 numbers in \[0, 1\]"),
        ({"x0": "1.5"}, r"x0\[0\] is out of range"),
        ({"x0": "nan"}, "out of range"),
        ({"x0": "a,b"}, "'x0' = 'a,b' is not allowed"),
        ({"x0": "[0.1, true]"}, "not a list of numbers"),
        ({"x0": 0.5}, "in a string"),
        ({"weights": "1,1"}, "has 2 numbers; expected 3 numbers >= 0"),
        ({"weights": "1,-1,1"}, r"weights\[1\] is out of range"),
        ({"weights": "0,0,0"}, "their sum is out of range"),
        ({"problem": "quadratic", "objective-factory": "", "x0": "0.5"},
         "not allowed with problem = 'quadratic'"),
    ],
)
def test_bad_values_are_refused_naming_the_key(extra, match):
    with pytest.raises(ConfigError, match=match):
        parse_run_config({**CUSTOM, **extra})


@pytest.mark.usefixtures("identity")
def test_the_server_starts_at_x0(tmp_path):
    rc = {**SMALL, "problem": "custom", "method": "fedzo", "rounds": 1,
          "out-dir": str(tmp_path / "out"), "x0": "0.3", "weights": "1,0,0"}
    nodes = [{"partition-id": i, "objective": "tests.flower.fixtures:sphere"} for i in range(3)]
    run = run_server(make_grid(rc, nodes), parse_run_config(rc))
    assert run.rows[0]["reported_value"] == pytest.approx(0.0)  # sphere's minimum is 0.3


def test_identity_and_checkpoint_meta_change_only_when_x0_or_weights_are_set():
    from fedzoo_server.app import checkpoint_meta
    from fedzoo_server.settings import run_identity

    assert "x0" not in run_identity(CUSTOM) and "weights" not in run_identity(CUSTOM)
    assert "start" not in checkpoint_meta(parse_run_config(CUSTOM))
    set_ = {**CUSTOM, "weights": "1,1,2"}
    assert run_identity(set_)["weights"] == "1,1,2"
    assert checkpoint_meta(parse_run_config(set_))["start"] == {"x0": None, "weights": [0.25, 0.25, 0.5]}


@pytest.mark.usefixtures("identity")
def test_a_resume_with_other_weights_is_refused(tmp_path):
    from fedzoo_server.app import FlowerRunError

    rc = {**SMALL, "problem": "custom", "method": "fedzo", "rounds": 1, "out-dir": str(tmp_path / "out"),
          "checkpoint-dir": str(tmp_path / "ckpt"), "weights": "1,1,2"}
    nodes = [{"partition-id": i, "objective": "tests.flower.fixtures:sphere"} for i in range(3)]
    run_server(make_grid(rc, nodes), parse_run_config(rc))
    other = {**rc, "rounds": 2, "resume": True, "weights": "1,1,1", "out-dir": str(tmp_path / "out2")}
    with pytest.raises(FlowerRunError, match="belongs to another run"):
        run_server(make_grid(other, nodes), parse_run_config(other))
