"""The node config: unknown keys and a malformed ``oracle-timeout`` are refused clearly."""

from __future__ import annotations

import pytest

from fedzoo.errors import ConfigError
from fedzoo_client.app import app as client_app
from fedzoo_client.objectives import NODE_CONFIG_KEYS, check_node_config, oracle_timeout
from fedzoo_server.records import content_meta
from tests.flower.test_client_app import context, message


@pytest.mark.parametrize(
    "node_config, match",
    [
        ({"partition-id": 0, "state_dir": "/tmp/x"}, r"Unknown node-config key\(s\) \['state_dir'\]"),
        ({"partition-id": 0, "orcale": "127.0.0.1:1"}, "'orcale'.*expected some of.*'oracle'"),
        ({"partition-id": 0, "oracle-timeout": "10"}, "'oracle-timeout' = '10'"),
        ({"partition-id": 0, "oracle-timeout": 0}, "'oracle-timeout' = 0 .*> 0"),
        ({"partition-id": 0, "oracle-timeout": -1.5}, "'oracle-timeout' = -1.5"),
        ({"partition-id": 0, "oracle-timeout": float("inf")}, "'oracle-timeout' = inf"),
        ({"partition-id": 0, "oracle-timeout": float("nan")}, "'oracle-timeout' = nan"),
        ({"partition-id": 0, "oracle-timeout": True}, "'oracle-timeout' = True"),
        ({"partition-id": 0, "num-partitions": 0}, "'num-partitions' = 0"),
    ],
)
def test_bad_node_configs_are_refused_before_anything_runs(node_config, match):
    with pytest.raises(ConfigError, match=match):
        client_app(message(None, "query.describe"), context(node_config))


def test_the_keys_flower_sets_in_simulation_and_every_key_the_client_reads_are_allowed():
    # flwr's simulation engine gives every virtual node these two keys
    ctx = context({"partition-id": 1, "num-partitions": 3})
    assert content_meta(client_app(message(None, "query.describe"), ctx).content)["partition-id"] == 1
    check_node_config({"partition-id": 0, "num-partitions": 5, "objective": "m:f", "oracle": "h:1",
                       "oracle-root-cert": "/ca.pem", "oracle-timeout": 2, "state-dir": "/s"})
    assert set(NODE_CONFIG_KEYS) == {"partition-id", "num-partitions", "objective", "oracle",
                                     "oracle-root-cert", "oracle-timeout", "state-dir"}


def test_oracle_timeout_defaults_to_30_s_and_takes_ints():
    assert oracle_timeout({}) == 30.0
    assert oracle_timeout({"oracle-timeout": 5}) == 5.0
