"""Every bad flag exits 2 with a clear message, never a traceback nor a MemoryError.

The sweep is ``simulations/benchmarks/faults.py``'s (``flag_cases``): every RunConfig
option set to values no run can use (negative, zero, NaN, inf, beyond int64 or its
range, a bogus choice), the problem flags (dim, clients, heterogeneity, problem-seed,
workers) and the size caps shared with the Flower run-config (rff-features x dim,
init-points x dim, history-max x dim, popsize x dim, the coordinate estimator's d x d),
median with two clients. It runs in one child process with a 4 GiB address-space limit,
so a cap that stopped working shows as a failed case, not as a swapping test machine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def faults():
    path = ROOT / "simulations" / "benchmarks" / "faults.py"
    spec = importlib.util.spec_from_file_location("faults_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_bad_flag_exits_2_naming_it(tmp_path):
    res = faults().flag_sweep(tmp_path)
    assert res["child_exit"] == 0, res["child_stderr"]
    assert res["answered"] == res["cases"] >= 150
    assert res["bad"] == [] and res["tracebacks"] == 0
    flags = {flag for flag, _ in faults().flag_cases()}
    for flag in ("--problem-seed", "--init-radius", "--dim", "--rff-features", "--workers",
                 "--heterogeneity", "--aggregation", "--rounds", "--popsize"):
        assert flag in flags
