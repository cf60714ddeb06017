"""Local Flower tooling (launch/): values handed to ``flwr run --run-config``."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")

from flwr.common.config import parse_config_args  # noqa: E402

from fedzoo_attack.federation import AttackSpec  # noqa: E402
from fedzoo_launch.local import toml_value  # noqa: E402


@pytest.mark.parametrize(
    "value",
    [True, 3, 0.25, "runs/out dir", "it's", '{"image": 853, "models_dir": "/tmp/w"}', ""],
)
def test_run_config_values_reach_flower_unchanged(value):
    assert parse_config_args([f"key={toml_value(value)}"]) == {"key": value}


def test_the_attack_run_config_passes_through_flower_parsing():
    spec = AttackSpec("mnist5k", 10, 0.7, 0, 0.3, False, 853, "", "/srv/weights dir")
    run_config = spec.run_config()
    args = [f"{k}={toml_value(v)}" for k, v in run_config.items()]
    assert parse_config_args(args) == run_config


@pytest.mark.parametrize("value", ["a\nb", "both ' and \" quotes"])
def test_values_flower_cannot_carry_are_refused(value):
    with pytest.raises(ValueError, match="newlines"):
        toml_value(value)
