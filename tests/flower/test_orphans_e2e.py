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
  continues from its last checkpoint.

Processes are found by a TMPDIR unique to the test, which every descendant inherits,
and any left are killed by PID. No timed assertion: the waits are upper bounds.
"""

from __future__ import annotations

import importlib.util
import signal
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def faults():
    path = ROOT / "simulations" / "benchmarks" / "faults.py"
    spec = importlib.util.spec_from_file_location("faults_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
