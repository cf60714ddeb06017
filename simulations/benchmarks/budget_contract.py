"""The budget contract, method by method: a hard budget in, an exact count out.

For every registered black-box method, ``fedzoo.minimize(objectives, x0, budget=B)`` on
N client callables that count every point they are given, one of which returns values
the server rejects (1e300 + sum x: every reply of that client is refused). Prints, per
method, the budget, the points the callables were given, ``num_queries``, the part
charged behind refused replies, the rounds, and whether the contract held
(given <= B and num_queries == given). Exit status 1 if it failed for any method.

    python simulations/benchmarks/budget_contract.py --budget 5000 --dim 10 --clients 3
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=int, default=5000)
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--hostile", type=int, default=1, help="client whose replies are all rejected (-1: none)")
    p.add_argument("--methods", default="", help="comma-separated (default: every black-box method)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import fedzoo
    from fedzoo.methods import get_method, method_names

    logging.disable(logging.WARNING)  # the rejected replies are logged one by one
    warnings.simplefilter("ignore", RuntimeWarning)  # the hostile client's overflows (in threads)
    methods = [m for m in (args.methods.split(",") if args.methods else method_names())
               if not get_method(m).exact_gradients]
    centres = np.linspace(0.3, 0.7, args.clients)
    ok_all = True
    print(f"budget {args.budget}, d={args.dim}, N={args.clients}, client {args.hostile} hostile "
          "(every reply rejected)")
    print(f"{'method':<14}{'given':>8}{'counted':>9}{'refused':>9}{'rounds':>8}{'s':>7}  contract")
    for method in methods:
        given = [0] * args.clients

        def make(i: int, given: list[int] = given):
            def f(X: np.ndarray) -> np.ndarray:
                X = np.atleast_2d(X)
                given[i] += len(X)
                if i == args.hostile:
                    return 1e300 + X.sum(1)
                return ((X - centres[i]) ** 2).sum(1)
            return f

        t0 = time.perf_counter()
        with np.errstate(all="ignore"):
            res = fedzoo.minimize([make(i) for i in range(args.clients)], np.full(args.dim, 0.5),
                                  method=method, budget=args.budget, seed=args.seed)
        wall = time.perf_counter() - t0
        total = sum(given)
        refused = sum(res.summary["refused_queries_by_client"].values())
        ok = total <= args.budget and res.num_queries == total
        ok_all &= ok
        print(f"{method:<14}{total:>8}{res.num_queries:>9}{refused:>9}{len(res.history) - 1:>8}"
              f"{wall:>7.1f}  {'held' if ok else 'BROKEN'}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
