"""Ablation of fzoos-vertex's server merge (BENCHMARKS.md §6, "FZooS for L∞ attacks").

fzoos-vertex merges into the next start vertex only the squares of the clients whose end
point the global surrogate predicts to lower F (``screen``, the method as registered).
``all`` merges every client's kept squares (the first version). For each image the script
runs both in process on the committed MNIST-5k client models and prints how many rounds
left the global point where it was (the start vertex was rejected or nothing was
merged), F at the start and at the end, and the client queries at the first success
(judged on the averaged logits, a check that is not a query).

    python simulations/attack/vertex_ablation.py --targeted --portion 0.7 --epsilon 0.3 \\
        --images 73,16,40
    python simulations/attack/vertex_ablation.py --portion 0.5 --epsilon 0.2 --images 845,65,12,448

The ``all`` variant replaces the method's ``aggregate_train`` in this process only.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402

import numpy as np  # noqa: E402


def merge_all(self, config, new, agg) -> None:  # noqa: ANN001
    """The first version: every client's kept squares merged, no screen."""
    from fedzoo.methods.square import vertices
    from fedzoo.methods.square_local import merge

    lo, hi = vertices(config, new.square_center)
    ids = sorted(agg.replies)
    onto = None if self._accepted(agg) else new.x
    new.vertex_start = merge(new.vertex_start, [np.asarray(agg.replies[i]["x"]) for i in ids],
                             [agg.weights[i] for i in ids], lo, hi, onto=onto)
    new.square_weights = np.asarray(agg.robust("square-weights", config), dtype=np.float64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--portion", type=float, default=0.7)
    ap.add_argument("--epsilon", type=float, default=0.3)
    ap.add_argument("--targeted", action="store_true")
    ap.add_argument("--images", default="73,16,40", help="comma-separated MNIST-5k test indices")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--local-steps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from fedzoo import RunConfig, run_federation
    from fedzoo.methods import square_local
    from fedzoo_attack.data import load_mnist_5k
    from fedzoo_attack.models import load_reference_models
    from fedzoo_attack.objectives import attack_problem, attack_success

    data, models = load_mnist_5k(), load_reference_models(args.portion)
    screen = square_local.FZooSVertex.aggregate_train
    print("| merge | image | rounds without a move | F(round 1) -> F(end) | queries at success |")
    print("|---|---|---|---|---|")
    for variant, agg_fn in (("all", merge_all), ("screen", screen)):
        square_local.FZooSVertex.aggregate_train = agg_fn
        for idx in (int(v) for v in args.images.split(",")):
            image, label = data.x_test[idx], int(data.y_test[idx])
            problem = attack_problem(models, image, label, args.epsilon, args.targeted)
            config = RunConfig.from_mapping({
                "method": "fzoos-vertex", "rounds": args.rounds, "local-steps": args.local_steps,
                "square-shape": "28x28", "square-iterations": 2000, "seed": args.seed})
            hit: list[int] = []

            def seen(r, x, row, image=image, label=label, hit=hit) -> bool:  # noqa: ANN001
                if not hit and attack_success(models, image, label, x, args.epsilon, args.targeted)["success"]:
                    hit.append(int(row["queries"]))
                return False

            res = run_federation(problem, config, workers=1, final_evaluation=False, round_callback=seen)
            vals = [r["reported_value"] for r in res.history[:-1]]
            still = sum(a == b for a, b in zip(vals, vals[1:]))
            print(f"| {variant} | {idx} | {still} of {len(vals) - 1} | {vals[1]:.2f} -> {vals[-1]:.2f} | "
                  f"{hit[0] if hit else '-'} |", flush=True)
    square_local.FZooSVertex.aggregate_train = screen
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
