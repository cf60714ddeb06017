"""Attack clients outside this process without Flower: the attack spec a remote client is
built from, and one client's CNN margin behind an oracle process (real gRPC)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("mlxtend")

from fedzoo.errors import ConfigError  # noqa: E402
from fedzoo_attack.federation import (  # noqa: E402
    FACTORY,
    AttackSpec,
    client_objective,
    objective_factory,
)
from fedzoo_attack.models import reference_weights_path  # noqa: E402
from tests.proto.servers import spawn, wait_ready  # noqa: E402

IMAGE = 853  # a test image the reference models (N=10, P=0.7) classify correctly
SPEC = AttackSpec("mnist5k", 10, 0.7, 0, 0.3, False, IMAGE)


def test_an_attack_client_served_by_an_oracle_process_answers_like_in_process(
    tmp_path: Path,
) -> None:
    pytest.importorskip("grpc")  # the oracle service; Flower is not needed
    from fedzoo_oracle.client import RemoteOracle

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


def test_attack_specs_are_validated() -> None:
    with pytest.raises(ConfigError, match="portion"):
        AttackSpec("mnist5k", 10, 1.5, 0, 0.3, False, 0)
    with pytest.raises(ConfigError, match="epsilon"):
        AttackSpec("mnist5k", 10, 0.5, 0, 0.0, False, 0)
    with pytest.raises(ConfigError, match="data_dir"):
        AttackSpec("mnist", 10, 0.5, 0, 0.2, False, 0)
    assert AttackSpec("digits", 10, 0.5, 0, 0.2, False, 0).data_dir == ""  # bundled
    with pytest.raises(ConfigError, match="not an index"):
        client_objective(AttackSpec("mnist5k", 10, 0.7, 0, 0.3, False, 10**7), 0)
    with pytest.raises(ConfigError, match="fedzoo attack prepare"):
        client_objective(AttackSpec("mnist5k", 10, 0.7, 99, 0.3, False, 0), 0)


def test_the_flower_factory_builds_the_clients_objective_from_the_spec_options() -> None:
    from fedzoo.objectives.loading import objective_from_factory, parse_objective_options

    run_config = SPEC.run_config()
    assert run_config["problem"] == "custom" and run_config["objective-factory"] == FACTORY
    options = parse_objective_options(run_config["objective-options"])
    assert AttackSpec.from_options(options, 10) == SPEC
    made = objective_from_factory(FACTORY, options, partition_id=4, num_clients=10, dim=784)
    X = np.random.default_rng(1).uniform(size=(3, 784))
    np.testing.assert_array_equal(made(X), client_objective(SPEC, 4)(X))
    assert objective_factory(partition_id=4, num_clients=10, **options).name == made.name
    with pytest.raises(ConfigError, match=r"Unknown attack option\(s\) \['imgae'\]"):
        objective_factory(partition_id=0, num_clients=10, imgae=3)
