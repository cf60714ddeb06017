"""The Flower app configuration: pyproject tables, run-config parsing, flower_home."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

from fedzoo.config import RunConfig
from fedzoo.errors import ConfigError
from server.settings import (
    FEDERATION_DEFAULTS,
    SMALL_RUN_OVERRIDES,
    parse_run_config,
    shipped_defaults,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_app_config_holds_every_runconfig_option_with_its_default(pyproject):
    config = pyproject["tool"]["flwr"]["app"]["config"]
    assert set(RunConfig.keys()) <= set(config)
    defaults = RunConfig().to_dict()
    differing = {
        k: config[k]
        for k in defaults
        if config[k] != defaults[k] or type(config[k]) is not type(defaults[k])
    }
    hint = "RunConfig changed: regenerate [tool.flwr.app.config] with `python -m server.settings`"
    assert differing == SMALL_RUN_OVERRIDES, hint  # documented small-run overrides only
    assert config == shipped_defaults(), hint
    for key, value in FEDERATION_DEFAULTS.items():
        assert config[key] == value
    parse_run_config(config)


def test_app_metadata_and_components(pyproject):
    flwr = pyproject["tool"]["flwr"]
    assert "federations" not in flwr  # flwr run would rewrite pyproject.toml
    assert flwr["app"]["publisher"] == "fedzoo"
    components = flwr["app"]["components"]
    assert components == {"serverapp": "server.app:app", "clientapp": "client.app:app"}
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    for spec, cls in ((components["serverapp"], ServerApp), (components["clientapp"], ClientApp)):
        module, attr = spec.split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), cls)


def test_fab_contains_the_apps_and_the_core_only_and_staging_builds_the_same_fab(tmp_path):
    import io
    import zipfile

    from flwr.cli.build import build_fab_from_disk

    from server.launch import stage_app

    fab = build_fab_from_disk(ROOT)  # what `flwr run .` ships (walks .venv too: seconds)
    names = zipfile.ZipFile(io.BytesIO(fab)).namelist()
    assert "server/app.py" in names and "client/app.py" in names and "fedzoo/protocol.py" in names
    assert not any(n.startswith(("tests/", "simulations/", ".venv/")) for n in names)
    assert build_fab_from_disk(stage_app(tmp_path / "app")) == fab  # the driver's fast copy


def test_flower_home_ships_a_local_simulation_connection():
    conf = tomllib.loads((ROOT / "simulations" / "flower_home" / "config.toml").read_text())
    local = conf["superlink"]["local-sim"]
    assert conf["superlink"]["default"] == "local-sim"
    assert local["address"] == ":local:"
    assert local["options"]["num-supernodes"] == FEDERATION_DEFAULTS["num-clients"]
    assert local["options"]["backend"]["client-resources"]["num-cpus"] == 1
    assert conf["superlink"]["own-sim"]["insecure"] is True


def test_missing_keys_take_the_shipped_defaults():
    s = parse_run_config({})
    assert s.config == RunConfig.from_mapping({**RunConfig().to_dict(), **SMALL_RUN_OVERRIDES})
    assert (s.problem, s.dim, s.num_clients) == ("quadratic", 20, 3)


def test_integral_floats_and_int_numbers_are_accepted():
    s = parse_run_config({"heterogeneity": 1, "num-clients": 4.0, "lr": 1})
    assert s.heterogeneity == 1.0 and s.num_clients == 4 and s.config.lr == 1.0


@pytest.mark.parametrize(
    "values, match",
    [
        ({"nonsense": 1}, "Unknown run-config key"),
        ({"method": "sgd"}, "'method'"),
        ({"dim": 0}, "'dim'"),
        ({"num-clients": 2.5}, "'num-clients'"),
        ({"heterogeneity": -1.0}, "'heterogeneity'"),
        ({"problem": "rosenbrock"}, "'problem'"),
        ({"node-wait-timeout": 0}, "'node-wait-timeout'"),
        ({"round-timeout": float("inf")}, "'round-timeout'"),
        ({"out-dir": ""}, "'out-dir'"),
    ],
)
def test_invalid_run_config_names_key_and_value(values, match):
    with pytest.raises(ConfigError, match=match):
        parse_run_config(values)
