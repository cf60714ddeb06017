"""Benchmark: cost of one FZooS local step against dimension d and GP history size n.

One local step = the surrogate gradient (GP on the n nearest points, analytic mean
gradient) + the correction (two RFF gradients, M features, float32 path) + the active
query selection (uncertainty trace of 100 candidates on the GP at the new iterate). The
client history holds max(n, 2000) points around x. Memory per client = the history, the
shared RFF map and the peak of numpy allocations during a step (tracemalloc); the history
a client holds at its cap (`history-max`, default 5000 points: reached after ~47 rounds at
the defaults) is shown too. Once per round a client also fits its RFF weights on
`rff-history` (500) points at the new global point: the last two columns time that fit
(from scratch, no cached Gram) and its peak memory.

    python simulations/benchmarks/scaling.py [--dims 100,300,784,2000] [--sizes 150,500,2000]

Medians of --repeats runs; prints a markdown table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from fedzoo.config import RunConfig  # noqa: E402
from fedzoo.corrections import fzoos_term  # noqa: E402
from fedzoo.estimators.surrogate import TrajectorySurrogate  # noqa: E402
from fedzoo.history import QueryHistory  # noqa: E402
from fedzoo.surrogates.gp import GPHyper  # noqa: E402
from fedzoo.surrogates.rff import RandomFourierFeatures, fit_rff_weights  # noqa: E402


def one_step(sur: TrajectorySurrogate, rff: RandomFourierFeatures, w_g: np.ndarray, w_o: np.ndarray,
             x: np.ndarray, rng: np.random.Generator) -> None:
    g = sur.gradient(x) + fzoos_term(x, 1, 1.0, rff, w_g, w_o)
    x_new = np.clip(x - 0.01 * np.sign(g), 0, 1)
    sur.most_uncertain(x_new, rng, 100, 5, 0.01)


def measure(d: int, n: int, M: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, size=d)
    h = max(n, 2000)
    hist = QueryHistory(d, h)
    X = np.clip(x + rng.uniform(-0.05, 0.05, size=(h, d)), 0, 1)
    hist.add(X, np.sum((X - 0.5) ** 2, axis=1))
    sur = TrajectorySurrogate(hist, n, "se", GPHyper(1.0, 1.0, 1e-4))
    rff = RandomFourierFeatures(d, M, 1.0, seed=0)
    w_g, w_o = rng.standard_normal(M), rng.standard_normal(M)
    one_step(sur, rff, w_g, w_o, x, rng)  # warm-up (float32 copies, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        one_step(sur, rff, w_g, w_o, x, rng)
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    one_step(sur, rff, w_g, w_o, x, rng)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    state = hist.X.nbytes + hist.y.nbytes
    shared = rff.V.nbytes + (rff._V32.nbytes if rff._V32 is not None else 0)
    defaults = RunConfig()
    cap_mb = defaults.history_max * (d + 1) * 8 / 2**20
    Xf, yf = hist.X[: defaults.rff_history], hist.y[: defaults.rff_history]
    fit_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fit_rff_weights(rff, Xf, yf, defaults.rff_ridge)
        fit_times.append(time.perf_counter() - t0)
    tracemalloc.start()
    fit_rff_weights(rff, Xf, yf, defaults.rff_ridge)
    _, fit_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"d": d, "n": n, "step_s": float(np.median(times)), "peak_mb": peak / 2**20,
            "history_mb": state / 2**20, "rff_mb": shared / 2**20, "cap_mb": cap_mb,
            "fit_s": float(np.median(fit_times)), "fit_peak_mb": fit_peak / 2**20}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", default="100,300,784,2000")
    ap.add_argument("--sizes", default="150,500,2000")
    ap.add_argument("--rff-features", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print("| d | GP points n | seconds per local step (median) | peak step memory (MiB) | "
          "history (MiB) | history at cap (MiB) | RFF map (MiB) | RFF fit, 500 points (s) | "
          "RFF fit peak (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d in [int(v) for v in args.dims.split(",")]:
        for n in [int(v) for v in args.sizes.split(",")]:
            r = measure(d, n, args.rff_features, args.repeats)
            print(f"| {d} | {n} | {r['step_s']:.4f} | {r['peak_mb']:.1f} | {r['history_mb']:.1f} | "
                  f"{r['cap_mb']:.1f} | {r['rff_mb']:.1f} | {r['fit_s']:.3f} | {r['fit_peak_mb']:.1f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
