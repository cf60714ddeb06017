"""``bbob:<function>``: COCO's BBOB functions (cocoex) federated over instances.

Values are cocoex's at the mapped point, clients hold distinct instances, F is the
weighted mean, x0 is the box centre, names parse, the problem runs through the engine and
the CLI's registry check, pickles (for processes) and is safe under threads; ``import
fedzoo`` does not load cocoex.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

cocoex = pytest.importorskip("cocoex")

from fedzoo.config import RunConfig  # noqa: E402
from fedzoo.engine import run_federation  # noqa: E402
from fedzoo.errors import ConfigError  # noqa: E402
from fedzoo.objectives import PROBLEMS, CountingObjective, make_problem  # noqa: E402
from fedzoo.objectives.bbob import BBOBClient, bbob_problem, is_bbob_name  # noqa: E402


def test_values_match_cocoex_at_the_mapped_point():
    p = make_problem("bbob:f7", dim=10, clients=3, heterogeneity=0.5, seed=0)
    U = np.random.default_rng(0).uniform(size=(4, 10))
    for i, obj in enumerate(p.objectives):
        suite = cocoex.Suite("bbob", "", f"function_indices:7 dimensions:10 instance_indices:{i + 1}")
        direct = suite.get_problem(0)
        assert direct.id == obj.problem_id == f"bbob_f007_i{i + 1:02d}_d10"
        want = np.array([direct(-5.0 + 10.0 * u) for u in U])
        np.testing.assert_allclose(obj(U), want, rtol=1e-14)
    # the corners of the unit box are BBOB's corners
    corner = p.objectives[0].value(np.zeros((1, 10)))[0]
    assert corner == pytest.approx(cocoex.BareProblem("bbob", 7, 10, 1)(np.full(10, -5.0)), rel=1e-14)


def test_instances_differ_per_client_and_the_seed_picks_a_disjoint_block():
    p = make_problem("bbob:3", dim=5, clients=5, heterogeneity=0.5, seed=0)
    assert p.name == "bbob:f3" and p.info["instances"] == [1, 2, 3, 4, 5]
    x = np.full((1, 5), 0.37)
    values = [o(x)[0] for o in p.objectives]
    assert len(set(values)) == 5  # other shifts, rotations and offsets
    held_out = make_problem("bbob:f3", dim=5, clients=5, heterogeneity=0.5, seed=1)
    assert held_out.info["instances"] == [6, 7, 8, 9, 10]
    assert bbob_problem(3, dim=5, clients=2, first_instance=42).info["instances"] == [42, 43]


def test_x0_is_the_box_centre_and_f_is_the_weighted_mean():
    p = make_problem("bbob:f15", dim=10, clients=4, heterogeneity=0.5, seed=0)
    np.testing.assert_array_equal(p.x0, np.full(10, 0.5))
    assert p.optimum_value is None and p.is_synthetic
    x = np.random.default_rng(1).uniform(size=10)
    each = [o(x[None])[0] for o in p.objectives]
    assert p.global_value(x) == pytest.approx(np.mean(each), rel=1e-14)
    p.weights = np.array([0.1, 0.2, 0.3, 0.4])
    assert p.global_value(x) == pytest.approx(float(np.dot(p.weights, each)), rel=1e-14)


@pytest.mark.parametrize("name,ok", [("bbob:f1", True), ("bbob:24", True), ("BBOB:F07", True),
                                     ("bbob:f25", False), ("bbob:0", False), ("bbob:", False),
                                     ("sphere", False)])
def test_names(name, ok):
    assert is_bbob_name(name) is ok and (name in PROBLEMS) is ok
    if not ok and name.lower().startswith("bbob"):
        with pytest.raises(ConfigError, match="function k in 1..24"):
            make_problem(name, dim=10)


def test_dimensions_cocoex_cannot_serve_are_refused_before_building():
    with pytest.raises(ConfigError, match="dim = 300 is not available.*320"):
        make_problem("bbob:f7", dim=300, clients=2)
    big = make_problem("bbob:f7", dim=80, clients=2)  # bbob-largescale
    assert big.info["suite"] == "bbob-largescale"
    assert np.isfinite(big.global_value(big.x0))


def test_vectorised_pickled_and_thread_safe():
    p = make_problem("bbob:f10", dim=10, clients=2, heterogeneity=0.5, seed=0)
    X = np.random.default_rng(2).uniform(size=(50, 10))
    want = p.objectives[0](X)
    assert want.shape == (50,)
    back = pickle.loads(pickle.dumps(p.objectives[0]))  # a process rebuilds its cocoex problem
    assert isinstance(back, BBOBClient) and back._problem is None
    np.testing.assert_array_equal(back(X), want)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda rows: p.objectives[0](rows), [X] * 8))
    assert all(np.array_equal(g, want) for g in got)


def test_runs_in_the_engine_with_every_query_counted():
    p = make_problem("bbob:f1", dim=5, clients=3, heterogeneity=0.5, seed=0)
    p.objectives = [CountingObjective(o) for o in p.objectives]
    res = run_federation(p, RunConfig.from_mapping({"method": "fedzo", "rounds": 3, "local-steps": 2}),
                         workers=2)
    assert res.num_queries == sum(o.points_seen for o in p.objectives) > 0
    assert res.history[-1]["value"] < res.history[0]["value"]


def test_import_fedzoo_does_not_load_cocoex():
    code = ("import sys, fedzoo; from fedzoo.objectives import PROBLEMS; "
            "assert 'bbob:f7' in PROBLEMS; assert 'cocoex' not in sys.modules, 'cocoex loaded'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_flower_run_config_accepts_a_bbob_problem():
    from fedzoo_server import settings  # numpy only: no flwr

    values = settings.shipped_defaults()
    values.update({"problem": "bbob:f7", "dim": 10, "num-clients": 3})
    parsed = settings.parse_run_config(values)
    problem = settings.build_problem(parsed)
    assert problem.name == "bbob:f7" and problem.info["instances"] == [1, 2, 3]
