"""End to end with real processes: ``flwr run`` simulations and a TLS deployment.

* a simulation through ``flwr run`` against our own ``flower-superlink --simulation``
  (the driver API, ``fedzoo_launch.driver.run_flower``) reproduces the in-process engine;
* a failed ServerApp is reported as a failure although ``flwr run`` exits 0;
* a deployment: SuperLink + 3 SuperNodes over TLS with SuperNode authentication, one
  client's objective served by a separate oracle process; an unregistered SuperNode is
  rejected; the clients' reported values, queries and bytes equal the engine's.

Every process is stopped by PID; the tests check that none carrying our marker is left.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from fedzoo.engine import run_federation
from fedzoo_launch.driver import run_flower
from fedzoo_launch.local import FlowerLaunchError, Session, make_node_key
from fedzoo_server.settings import build_problem, parse_run_config
from tests.flower.conftest import SMALL, same

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
COLUMNS = (
    "round", "queries", "value", "reported_value", "bytes_up", "bytes_down", "clients",
    "participants", "client_queries",
)


def engine(rc):
    s = parse_run_config(rc)
    return run_federation(build_problem(s), s.config, workers=1)


def read_rows(out: Path):
    from fedzoo.results import read_history

    return read_history(out / "history.csv")


def test_flwr_run_simulation_reproduces_the_engine(tmp_path, no_leftovers):
    rc = {**SMALL, "method": "fzoos"}
    summ = run_flower(rc, tmp_path / "sim", num_clients=3, timeout_s=240)
    assert summ["engine"] == "flower" and summ["flower"]["simulation"] is True
    ref = engine({**rc, "num-clients": 3})
    rows = read_rows(tmp_path / "sim")
    assert len(rows) == len(ref.history)
    for got, want in zip(rows, ref.history):
        assert all(same(got[c], want[c]) for c in COLUMNS), (got, want)
    log = (tmp_path / "sim" / "flower-run.log").read_text()
    assert "round 3/3" in log and "serves partition 2" in log


def test_a_failed_serverapp_is_a_failure_although_flwr_run_exits_0(tmp_path, no_leftovers):
    # every node needs its own objective with problem = custom: nobody can join
    rc = {**SMALL, "method": "fedzo", "problem": "custom", "node-wait-timeout": 120.0}
    with pytest.raises(FlowerLaunchError, match="finished:failed") as err:
        run_flower(rc, tmp_path / "fail", num_clients=3, timeout_s=240)
    assert "custom" in str(err.value)


def _load_deploy_script():
    spec = importlib.util.spec_from_file_location(
        "run_deployment", ROOT / "simulations" / "deploy" / "run_deployment.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tls_deployment_with_node_auth_and_a_remote_oracle(tmp_path, no_leftovers):
    deploy = _load_deploy_script()
    rc = {**SMALL, "method": "fedzo", "rounds": 2, "num-clients": 3}
    with Session(tmp_path / "deploy", simulation=False, tls=True, node_auth=True) as session:
        session.start_superlink()
        nodes = deploy.start_federation(session, rc, num_clients=3, oracle_client=2)
        assert "oracle" in nodes[2] and "oracle" not in nodes[0]
        # a node whose key was never registered is turned away
        rogue_key, _ = make_node_key(session.workdir / "keys", "rogue")
        rogue = session.start_supernode("rogue", {"partition-id": 0}, private_key=rogue_key)
        summ = session.run(rc, tmp_path / "out", timeout_s=300)
        assert rogue.wait(timeout=60) != 0
        assert "305" in session.log_of("rogue").read_text()
        listed = session.flwr("supernode", "list", session.connection, "--format", "json").stdout
        assert (
            len(json.loads(listed[listed.index("{") :])["nodes"]) == 3
        )  # the registered ones only
    assert summ["flower"]["simulation"] is False and summ["flower"]["value_source"] == "reported"
    assert summ["flower"]["objective_kinds"] == {"0": "problem", "1": "problem", "2": "oracle"}
    ref = engine(rc)
    rows = read_rows(tmp_path / "out")
    for got, want in zip(rows, ref.history):  # a deployment reports, it never simulates F
        assert got["value"] == got["reported_value"] or math.isnan(got["value"])
        assert all(
            same(got[c], want[c])
            for c in ("reported_value", "queries", "bytes_up", "bytes_down", "clients")
        )


def test_cli_flower_run_checkpoints_and_resumes_like_the_engine(tmp_path, no_leftovers, capsys):
    import shutil

    from fedzoo_cli.main import main

    flags = ["--engine", "flower", "--method", "fzoos", "--dim", "10", "--clients", "3",
             "--rff-features", "200", "--local-steps", "4", "--gp-history", "80"]
    out = tmp_path / "flower"
    assert main(["run", *flags, "--rounds", "2", "--checkpoint", "--out", str(out)]) == 0
    # state that is not this run's: refused in one line (exit 2) before Flower starts
    for case, words in (("swapped", "holds the state of partition 1, not of partition 0"),
                        ("deleted", "no snapshot before round 3"),
                        ("foreign", "belongs to another run")):
        bad = tmp_path / case
        shutil.copytree(out, bad)
        runs = next((bad / "client-state").glob("run-*"))
        if case == "swapped":
            (runs / "partition-0").rename(runs / "p0")
            (runs / "partition-1").rename(runs / "partition-0")
            (runs / "p0").rename(runs / "partition-1")
        elif case == "deleted":
            shutil.rmtree(bad / "client-state")
        else:  # the directory's run is another one than its checkpoint's
            (bad / "run-id").write_text("ab" * 16 + "\n")
        capsys.readouterr()
        assert main(["run", "--resume", str(bad), "--rounds", "3"]) == 2, case
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert main(["run", "--resume", str(out), "--rounds", "3"]) == 0
    s = parse_run_config({**SMALL, "method": "fzoos", "local-steps": 4, "gp-history": 80})
    ref = run_federation(build_problem(s), s.config, workers=1)
    rows = read_rows(out)
    assert len(rows) == len(ref.history) == 4
    for got, want in zip(rows, ref.history):
        assert all(same(got[c], want[c]) for c in COLUMNS), (got, want)
    assert (out / "client-state").is_dir()
