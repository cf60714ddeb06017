"""The Flower app configuration: pyproject tables, run-config parsing, flower_home."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

from fedzoo.config import RunConfig
from fedzoo.errors import ConfigError
from fedzoo.payload import MAX_ARRAY_ELEMENTS
from fedzoo_server.app import checkpoint_meta
from fedzoo_server.settings import (
    FEDERATION_DEFAULTS,
    SMALL_RUN_OVERRIDES,
    parse_run_config,
    run_key,
    shipped_defaults,
    start_point,
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
    hint = "RunConfig changed: regenerate [tool.flwr.app.config] with `python -m fedzoo_server.settings`"
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
    assert components == {"serverapp": "fedzoo_server.app:app", "clientapp": "fedzoo_client.app:app"}
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    for spec, cls in ((components["serverapp"], ServerApp), (components["clientapp"], ClientApp)):
        module, attr = spec.split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), cls)


def test_fab_contains_the_apps_the_core_and_the_attack_only_and_staging_builds_the_same_fab(tmp_path):
    import io
    import zipfile

    from flwr.cli.build import build_fab_from_disk

    from fedzoo_launch.local import stage_app

    fab = build_fab_from_disk(ROOT)  # what `flwr run .` ships (walks .venv too: seconds)
    names = zipfile.ZipFile(io.BytesIO(fab)).namelist()
    assert "fedzoo_server/app.py" in names and "fedzoo_client/app.py" in names and "fedzoo/protocol.py" in names
    assert "fedzoo_attack/federation.py" in names  # ClientApps build the attack objective
    assert not any(n.startswith(("tests/", "simulations/", ".venv/", "fedzoo_launch/", "fedzoo_cli/"))
                   for n in names)
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


def _wrong_type(default, key=""):
    """A value of the wrong type for a key whose default is ``default``."""
    if key == "value-floor":  # "" (off) or a number, given as text or as a number
        return "many"
    if isinstance(default, bool):
        return "yes"
    if isinstance(default, (int, float)):
        return "many"
    return 7


def test_every_app_config_key_has_a_validation_rule(pyproject):
    """A key added to [tool.flwr.app.config] without a rule fails here: a wrong-typed
    value must be refused with an error that names the key."""
    config = pyproject["tool"]["flwr"]["app"]["config"]
    unchecked = []
    for key, default in config.items():
        try:
            parse_run_config({key: _wrong_type(default, key)})
        except ConfigError as err:
            assert f"'{key}'" in str(err), (key, str(err))
        else:
            unchecked.append(key)
    assert unchecked == []


@pytest.mark.parametrize(
    "values, key",
    [
        ({"rounds": 0}, "rounds"), ({"local-steps": 0}, "local-steps"), ({"seed": -1}, "seed"),
        ({"lr": 0}, "lr"), ({"fraction": 1.5}, "fraction"), ({"clip-factor": 0}, "clip-factor"),
        ({"server-lr": -1}, "server-lr"), ({"rgf-directions": 0}, "rgf-directions"),
        ({"fd-step": 0}, "fd-step"), ({"prox-mu": -1}, "prox-mu"), ({"gp-history": 0}, "gp-history"),
        ({"gp-fit-points": 0}, "gp-fit-points"), ({"gp-restarts": 0}, "gp-restarts"),
        ({"history-max": 0}, "history-max"), ({"init-points": -1}, "init-points"),
        ({"init-radius": 0}, "init-radius"), ({"explore-candidates": 0}, "explore-candidates"),
        ({"explore-points": -1}, "explore-points"), ({"explore-radius": 0}, "explore-radius"),
        ({"sync-candidates": 0}, "sync-candidates"), ({"sync-points": -1}, "sync-points"),
        ({"rff-lengthscale": 0}, "rff-lengthscale"), ({"rff-history": 0}, "rff-history"),
        ({"rff-ridge": 0}, "rff-ridge"), ({"gamma": -1}, "gamma"),
        ({"gamma-schedule": "log"}, "gamma-schedule"), ({"aggregation": "mode"}, "aggregation"),
        ({"num-clients": 0}, "num-clients"), ({"problem-seed": -1}, "problem-seed"),
        ({"query-budget": -1}, "query-budget"), ({"round-timeout": float("nan")}, "round-timeout"),
        # min-replies above the clients asked per round: the global state could never move
        ({"min-replies": 4}, "min-replies"),
        ({"min-replies": 2, "fraction": 0.3}, "min-replies"),
        # the objective factory of a custom problem and its options (checked for form)
        ({"objective-factory": "os.system('x')"}, "objective-factory"),
        ({"objective-factory": "tests.flower.fixtures:shifted_sphere"}, "objective-factory"),
        ({"objective-options": "{not json"}, "objective-options"),
        ({"objective-options": "[1, 2]"}, "objective-options"),
        ({"objective-options": '{"shift": 0.5}'}, "objective-options"),  # without a factory
        ({"problem": "custom", "objective-factory": "tests.flower.fixtures:shifted_sphere",
          "objective-options": '{"partition_id": 1}'}, "objective-options"),
        # upper bounds: longer than any reply may carry, or a history that cannot be stored
        ({"dim": MAX_ARRAY_ELEMENTS + 1}, "dim"),
        ({"rff-features": MAX_ARRAY_ELEMENTS + 1}, "rff-features"),
        ({"dim": 20_000, "history-max": 5000}, "history-max"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(values, key):
    with pytest.raises(ConfigError, match=f"'{key}'") as err:
        parse_run_config(values)
    assert repr(values[key]) in str(err.value) or str(values[key]) in str(err.value)


def test_limits_accept_what_can_work():
    assert parse_run_config({"min-replies": 3}).config.min_replies == 3  # all 3 asked
    assert parse_run_config({"min-replies": 2, "fraction": 0.5}).config.min_replies == 2  # ceil(1.5)
    # the history cap binds surrogate methods only (others keep no history)
    assert parse_run_config({"method": "fedzo", "dim": 20_000, "history-max": 5000}).dim == 20_000
    assert parse_run_config({"dim": 20_000, "history-max": 2500}).config.history_max == 2500


def test_an_objective_factory_with_options_identifies_the_run():
    attack = {"problem": "custom", "objective-factory": "fedzoo_attack.federation:objective_factory",
              "objective-options": '{"image": 7, "dataset": "mnist5k"}'}
    s = parse_run_config(attack)
    assert s.objective_options == '{"dataset":"mnist5k","image":7}'  # canonical text
    assert s.objective_kwargs == {"dataset": "mnist5k", "image": 7}
    assert s.objective_meta == {"factory": attack["objective-factory"],
                                "options": {"dataset": "mnist5k", "image": 7}}
    assert checkpoint_meta(s)["objective"] == s.objective_meta  # what checkpoints record
    assert not s.synthetic and start_point(s)[0].tolist() == [0.5] * s.dim  # unperturbed image
    plain = parse_run_config({})
    assert plain.objective_meta is None and checkpoint_meta(plain)["objective"] is None
    other = {**attack, "objective-options": '{"image": 8, "dataset": "mnist5k"}'}
    assert run_key(attack) != run_key(other) and run_key(attack) != run_key({})
