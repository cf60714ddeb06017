"""The ServerApp's run-config tensorboard-dir: the same scalars as the engine's, and the
live log's values (in-process grid)."""

from __future__ import annotations

import logging

import pytest

from fedzoo_server.app import run_server
from fedzoo_server.settings import parse_run_config
from tests.flower.conftest import SMALL, make_grid

pytestmark = pytest.mark.usefixtures("identity")


def run_config(tmp_path, **extra):
    return {**SMALL, "method": "fedzo", "rounds": 3, "out-dir": str(tmp_path / "out"),
            "node-wait-timeout": 5.0, **extra}


def test_tensorboard_dir_logs_every_round_of_a_flower_run(tmp_path):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("tensorboard")
    from tests.core.test_tensorboard import check_against_history, scalars

    rc = run_config(tmp_path, **{"tensorboard-dir": str(tmp_path / "tb")})
    run = run_server(make_grid(rc), parse_run_config(rc))
    check_against_history(scalars(tmp_path / "tb"), run.rows)


def test_no_tensorboard_dir_writes_no_events(tmp_path):
    rc = run_config(tmp_path)
    assert parse_run_config(rc).tensorboard_dir == ""
    run_server(make_grid(rc), parse_run_config(rc))
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_the_live_log_shows_a_value_or_says_it_is_not_reported_yet(tmp_path, caplog):
    rc = run_config(tmp_path)
    with caplog.at_level(logging.INFO, logger="fedzoo.rounds"):
        run_server(make_grid(rc), parse_run_config(rc), simulation=False)  # values reported only
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("round ")]
    assert len(lines) == 3 and not any("nan" in line for line in lines)
    assert lines[0].startswith("round 1/3: value not reported yet (round 0: ")
    assert "value not reported yet (round 1: " in lines[1]


def test_tensorboard_dir_must_be_a_string():
    from fedzoo.errors import ConfigError

    with pytest.raises(ConfigError, match="tensorboard-dir"):
        parse_run_config({"tensorboard-dir": 3})
