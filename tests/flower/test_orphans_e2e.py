"""No orphans whatever kills the driver; one writer per run directory (real processes).

The scenarios are ``simulations/benchmarks/faults.py``'s (which counts them for
RELIABILITY.md); here their outcomes are checked:

* ``fedzoo run --engine flower`` killed with SIGKILL (no cleanup of its own runs) or
  SIGTERM, once its first round is written: every process it started, detached ones
  included (``flower-superlink``, ``flower-superexec``, the simulation), is gone and its
  temporary directory removed; the killed run resumes from its checkpoint, losing no
  finished round;
* a ``--resume`` started while the first run (a real process) still writes its
  directory is refused with exit 2 naming that process; once it is killed, the resume
  continues from its last checkpoint;
* ``setsid fedzoo run --engine flower ... --rounds 4`` (the red-team's command) SIGKILLed
  at two moments, as ``simulations/benchmarks/orphans.py`` does at random ones: when the
  simulation has just been launched, and when Ray's agents (``ray::DashboardAgent``,
  ``ray::RuntimeEnvAgent``) are up: 10 s later no process of the run is left (found by a
  marker in the environment, by descent, and by the process groups and sessions of
  the run's processes, recorded while the driver lived), its temporary directories are
  removed, and the federation wrote no more than the round it was finishing.

Processes are found by a TMPDIR (or marker) unique to the test, which every descendant
inherits, and any left are killed by PID. No timed assertion: the waits are upper bounds
(the 10 s is the requirement itself).
"""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _benchmark(name: str):
    key = f"{name}_benchmark"
    if key not in sys.modules:  # registered first: dataclasses look their module up
        path = ROOT / "simulations" / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def faults():
    return _benchmark("faults")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_flower_driver_leaves_no_process_behind(tmp_path, sig):
    res = faults().driver_kill(sig, tmp_path, resume=sig == signal.SIGKILL)
    assert res["started"] and res["processes_before"] >= 3, res
    assert res["processes_left"] == 0 and res["all_gone"], res
    assert res["temp_dirs_left"] == [], res  # the session's temporary directory removed
    if sig == signal.SIGTERM:
        assert res["exit_status"] == 128 + signal.SIGTERM  # the CLI's own cleanup ran
    else:
        assert res["resume_exit"] == 0 and res["finished_rounds_lost"] == 0, res
        assert res["resumed_rows"] == res["checkpoint_round"] + 2


def test_a_resume_while_the_old_run_still_writes_is_refused(tmp_path):
    res = faults().resume_while_writing(tmp_path)
    assert res["refused_exit"] == 2 and res["names_pid"], res
    assert "is being written by another fedzoo run" in res["refused_message"]
    assert not res["traceback"]
    assert res["resume_after_kill_exit"] == 0
    assert res["rounds_after_resume"] == res["checkpoint_round_at_kill"] + 1


def _running(fragment: str):
    """A kill moment: a process of the run whose command line (now) holds ``fragment``."""
    bench = _benchmark("orphans")

    def when(tracker, out_dir) -> bool:
        return any(fragment in bench._cmdline(pid) for pid in list(tracker.seen))

    return when


@pytest.mark.parametrize("moment", ["flwr-simulation", "DashboardAgent"])
def test_a_driver_sigkilled_mid_run_leaves_no_process_after_10_s(tmp_path, moment):
    res = _benchmark("orphans").kill_once(tmp_path, when=_running(moment), after_s=10.0)
    assert not res["finished_before_kill"], res
    assert res["processes_at_kill"] >= 4, res  # watchdog, superlink, superexec, simulation, ...
    assert res["processes_left"] == 0, res["left"]
    assert len(res["temp_dirs"]) == 2 and res["temp_dirs_left"] == [], res
    # the federation stopped with its driver: it did not go on to its last round
    assert res["rounds_after"] <= res["rounds_at_kill"] + 1 and res["rounds_after"] < 5, res
