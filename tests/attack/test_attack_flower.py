"""The attack outside this process: each client's CNN behind an oracle process (real
gRPC) or behind its ClientApp in a Flower simulation (real flwr processes), with the
in-process results."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("flwr")

from fedzoo.attack.federation import AttackSpec, client_objective  # noqa: E402
from fedzoo.attack.models import reference_weights_path  # noqa: E402
from fedzoo.cli import main  # noqa: E402
from fedzoo.errors import ConfigError  # noqa: E402
from tests.proto.servers import spawn, wait_ready  # noqa: E402

IMAGE = 853  # a test image the reference models (N=10, P=0.7) classify correctly
SPEC = AttackSpec("mnist5k", 10, 0.7, 0, 0.3, False, IMAGE)


def test_an_attack_client_served_by_an_oracle_process_answers_like_in_process(tmp_path):
    from client.oracle import RemoteOracle

    server = spawn(tmp_path, "--problem", "attack", "--clients", "10", "--portion", "0.7",
                   "--epsilon", "0.3", "--image", str(IMAGE), "--client-id", "4",
                   "--models-dir", str(reference_weights_path(0.7).parent))
    try:
        server = wait_ready(server, timeout_s=60)
        X = np.random.default_rng(0).uniform(size=(6, 784))
        with RemoteOracle(server.address, timeout_s=30.0) as oracle:
            assert oracle.dim == 784
            np.testing.assert_allclose(oracle(X), client_objective(SPEC, 4)(X), rtol=0, atol=0)
            assert oracle.num_queries == 6
    finally:
        server.stop()


def test_attack_specs_are_validated():
    with pytest.raises(ConfigError, match="portion"):
        AttackSpec("mnist5k", 10, 1.5, 0, 0.3, False, 0)
    with pytest.raises(ConfigError, match="epsilon"):
        AttackSpec("mnist5k", 10, 0.5, 0, 0.0, False, 0)
    with pytest.raises(ConfigError, match="attack-data-dir"):
        AttackSpec("mnist", 10, 0.5, 0, 0.2, False, 0)
    with pytest.raises(ConfigError, match="not an index"):
        client_objective(AttackSpec("mnist5k", 10, 0.7, 0, 0.3, False, 10**7), 0)
    with pytest.raises(ConfigError, match="fedzoo attack prepare"):
        client_objective(AttackSpec("mnist5k", 10, 0.7, 99, 0.3, False, 0), 0)


def _rows(path):
    with open(path) as fh:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(fh)]


@pytest.mark.slow
def test_attack_through_the_flower_app_gives_the_in_process_outcome(tmp_path, capsys):
    common = ["attack", "--clients", "10", "--portion", "0.7", "--epsilon", "0.3",
              "--image-ids", str(IMAGE), "--method", "fzoos,fedzo", "--rounds", "10",
              "--rff-features", "500", "--gp-history", "60", "--local-steps", "4",
              "--budget", "2000", "--seed", "0", "--no-plot"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--engine", "flower", "--out", str(tmp_path / "flower")]) == 0
    for method in ("fzoos", "fedzo"):
        for name in ("history.csv", "attack.csv"):
            local = _rows(tmp_path / "local" / method / name)
            remote = _rows(tmp_path / "flower" / method / name)
            if name == "attack.csv":  # per-image timing columns aside
                local = [{k: v for k, v in r.items() if "_s" not in k} for r in local]
                remote = [{k: v for k, v in r.items() if "_s" not in k} for r in remote]
            assert local == remote, (method, name)
    # the Flower runs stopped at the budget (2000 queries), not at the 10-round cap
    run = tmp_path / "flower" / "flower" / "fzoos" / f"image{IMAGE}"
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert int(rows[-1]["queries"]) >= 2000 > int(rows[-2]["queries"]) and len(rows) < 11
    assert np.load(run / "points.npy").shape == (len(rows), 784)
