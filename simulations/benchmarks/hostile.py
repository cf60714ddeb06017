"""Benchmark: robust aggregation of FZooS's surrogate weights against one hostile client.

Client 0 answers every sync with finite RFF weights of the right shape (so payload
validation accepts them) but scaled by --scale and sign-flipped: a poisoned surrogate.
Compares the final F of plain averaging, coordinate-wise median and norm clipping with
the same run without the hostile client (median over --seeds).

    python simulations/benchmarks/hostile.py --dim 100 --rounds 20 --seeds 0,1,2
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

from fedzoo import RunConfig, engine, make_problem, protocol, run_federation  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--heterogeneity", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--rff-features", type=int, default=2000)
    ap.add_argument("--scale", type=float, default=-50.0)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    honest_sync = protocol.client_sync

    def hostile_sync(config, objective, state, message, client_id):  # type: ignore[no-untyped-def]
        state, reply = honest_sync(config, objective, state, message, client_id)
        if client_id == 0:
            reply = {**reply, "rff-weights": args.scale * reply["rff-weights"]}
        return state, reply

    print(f"| aggregation | hostile client | final F (median over seeds {args.seeds}) | per seed |")
    print("|---|---|---|---|")
    for aggregation, hostile in (("mean", False), ("mean", True), ("median", True), ("clip", True),
                                 ("median", False), ("clip", False)):
        finals = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            p = make_problem("quadratic", dim=args.dim, clients=args.clients,
                             heterogeneity=args.heterogeneity, seed=seed)
            cfg = RunConfig.from_mapping({"method": "fzoos", "rounds": args.rounds, "seed": seed,
                                          "rff-features": args.rff_features, "aggregation": aggregation})
            engine.protocol.client_sync = hostile_sync if hostile else honest_sync
            finals.append(run_federation(p, cfg, workers=1).value)
        engine.protocol.client_sync = honest_sync
        print(f"| {aggregation} | {'yes' if hostile else 'no'} | {np.median(finals):.5f} | "
              f"{', '.join(f'{v:.5f}' for v in finals)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
