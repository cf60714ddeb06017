"""A BBOB problem (``bbob:f<k>``) over Flower: the run-config names it, the ServerApp and
the ClientApps build it (each process its own cocoex problems) and the history equals
the engine's (in-process grid, every message through the wire format)."""

from __future__ import annotations

import pytest

pytest.importorskip("cocoex")

from fedzoo.engine import run_federation  # noqa: E402
from fedzoo_server.app import run_server  # noqa: E402
from fedzoo_server.settings import build_problem, parse_run_config  # noqa: E402
from tests.flower.conftest import SMALL, make_grid  # noqa: E402
from tests.flower.test_parity import assert_same_history  # noqa: E402

pytestmark = pytest.mark.usefixtures("identity")


def test_a_bbob_problem_runs_over_flower_as_in_the_engine(tmp_path):
    rc = {**SMALL, "problem": "bbob:7", "dim": 5, "method": "fedzo", "rounds": 2, "local-steps": 2,
          "problem-seed": 1, "out-dir": str(tmp_path / "flower")}
    s = parse_run_config(rc)
    problem = build_problem(s)
    assert problem.name == "bbob:f7" and problem.info["instances"] == [4, 5, 6]  # held-out block
    ref = run_federation(problem, s.config, workers=1)
    run = run_server(make_grid(rc), s)
    assert_same_history(run.rows, ref.history)
    assert run.summary["problem"]["name"] == "bbob:f7"
