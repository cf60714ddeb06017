"""A SuperNode whose objective cannot load ends the run within seconds (in-process grid).

The ClientApp's describe handler names the partition in its error
(:mod:`fedzoo_server.failures`); the server fails the run with that error and a hint about the
objective, instead of waiting ``node-wait-timeout`` and blaming missing SuperNodes.
"""

from __future__ import annotations

import time

import pytest

from fedzoo_server.app import FlowerRunError, run_server
from fedzoo_server.failures import ObjectiveLoadError, objective_failure, parse_objective_failure
from fedzoo_server.settings import parse_run_config
from tests.flower.conftest import SMALL, make_grid

pytestmark = pytest.mark.usefixtures("identity")


def config(tmp_path, **extra):
    return {**SMALL, "method": "fedzo", "rounds": 1, "out-dir": str(tmp_path / "out"),
            "node-wait-timeout": 120.0, **extra}


def nodes(bad: dict[int, str]) -> list[dict]:
    return [{"partition-id": i, "objective": bad.get(i, "tests.flower.fixtures:sphere")}
            for i in range(3)]


@pytest.mark.parametrize("simulation", [False, True])
def test_a_missing_user_module_fails_the_run_at_once_with_the_clients_error(tmp_path, simulation):
    rc = config(tmp_path, problem="custom")
    grid = make_grid(rc, nodes({1: "mypkg.mysensors:measure"}))
    start = time.monotonic()
    with pytest.raises(FlowerRunError) as info:
        run_server(grid, parse_run_config(rc), simulation=simulation)
    assert time.monotonic() - start < 10  # not the 120 s node-wait-timeout
    text = str(info.value)
    assert "No module named 'mypkg'" in text and "partition 1" in text
    assert "PYTHONPATH" in text and "Start one SuperNode per partition" not in text
    assert grid.calls["query.describe"] == 3 and "train" not in grid.calls


def test_the_error_is_found_while_other_nodes_are_still_missing(tmp_path):
    # only the failing node has connected: no need to wait for the others
    rc = config(tmp_path, problem="custom", **{"node-wait-timeout": 2.0})
    grid = make_grid(rc, nodes({0: "mypkg.mysensors:measure"}))
    first = list(grid.contexts)[:1]
    grid.get_node_ids = lambda: first
    start = time.monotonic()
    with pytest.raises(FlowerRunError, match="partition 0 cannot load its objective"):
        run_server(grid, parse_run_config(rc), simulation=False)
    assert time.monotonic() - start < 2.0  # before the wait ran out (described at half time)


def test_a_custom_node_without_an_objective_names_its_partition(tmp_path):
    rc = config(tmp_path, problem="custom")
    configs = nodes({})
    configs[2] = {"partition-id": 2}
    with pytest.raises(FlowerRunError, match=r"partition 2 cannot load its objective") as info:
        run_server(make_grid(rc, configs), parse_run_config(rc), simulation=False)
    assert "needs an 'objective-factory'" in str(info.value)


def test_other_node_errors_fail_at_once_when_every_expected_node_answered(tmp_path):
    rc = config(tmp_path)
    grid = make_grid(rc, [{"partition-id": 0}, {"partition-id": 0}, {"partition-id": 2}])
    start = time.monotonic()
    with pytest.raises(FlowerRunError, match="already served") as info:
        run_server(grid, parse_run_config(rc), simulation=False)
    assert time.monotonic() - start < 10
    assert "Every node answered" in str(info.value)


def test_missing_nodes_keep_the_start_a_supernode_hint(tmp_path):
    rc = config(tmp_path, **{"node-wait-timeout": 0.5})
    grid = make_grid(rc)
    two = list(grid.contexts)[:2]
    grid.get_node_ids = lambda: two
    with pytest.raises(FlowerRunError, match="Start one SuperNode per partition"):
        run_server(grid, parse_run_config(rc), simulation=False)


def test_the_failure_survives_the_supernodes_error_format():
    err = objective_failure(3, ModuleNotFoundError("No module named 'mypkg'"))
    assert isinstance(err, ObjectiveLoadError)
    deployed = str(type(err)) + ":<'" + str(err) + "'>"  # flwr's run_clientapp format
    assert parse_objective_failure(deployed) == (3, "ModuleNotFoundError: No module named 'mypkg'")
    multi = objective_failure(0, ValueError("line one\nline two"))
    assert parse_objective_failure(f"Traceback ...\nObjectiveLoadError: {multi}") == (
        0, "ValueError: line one line two")
    assert parse_objective_failure("<class 'ValueError'>:<'boom'>") is None
