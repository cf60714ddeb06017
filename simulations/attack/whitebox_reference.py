"""White-box reference: which benchmark images can be fooled at all within epsilon?

Not a federated or black-box method: projected gradient descent with the exact gradient
of F (the mean of the clients' margins) through the client CNNs (torch autograd), Adam
with the same step as the benchmark (lr 0.01 in x, i.e. 0.02 eps per pixel), 400 steps,
plus sign-gradient PGD (step eps/20, 400 steps). An image is counted as attackable when
either run fools the averaged logits at some step. It shows how far a black-box method's
success rate is from what the threat model allows; its "queries" are gradients and
are not comparable.

The data set, N, P, model seed, images, eps and targeting are read from the run's
summary.json (``problem.dataset``: mnist5k, digits, or mnist / cifar10 with
``--data-dir``); the client models are those the run used (reference weights or the
cache, trained on demand like ``fedzoo attack``). Each step's success is read from the
averaged logits torch computes anyway and confirmed by ``attack_success`` (the rule every
method is judged by).

Usage: python simulations/attack/whitebox_reference.py [--data-dir DIR] [--out PATH]
           [--steps S] RUN_DIR [RUN_DIR ...]
(RUN_DIR: the output of `fedzoo attack`.) Prints one line per run and writes
``whitebox.json`` into RUN_DIR (``--out PATH`` instead, with one RUN_DIR): images
attackable / total, the images not attackable, the problem and the wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedzoo_attack.data import load_dataset
from fedzoo_attack.models import torch_threads, train_client_models
from fedzoo_attack.objectives import attack_success

STEPS = 400


def _nchw(images: torch.Tensor) -> torch.Tensor:
    """Data-set images (n x H x W or n x H x W x C, channels last) as the CNNs take them."""
    return images[:, None] if images.dim() == 3 else images.permute(0, 3, 1, 2)


def fooled(models: Any, image: np.ndarray, label: int, eps: float, targeted: bool,
           steps: int = STEPS, num_classes: int = 10) -> bool:
    """Whether Adam or sign-gradient PGD on F fools the averaged logits within ``steps``."""
    a = torch.from_numpy(np.asarray(image, dtype=np.float32)[None])  # 1 x image shape
    y = int(label)
    cls = (y + 1) % num_classes if targeted else y
    nets = list(models.models)

    def judge(x: torch.Tensor) -> bool:
        xv = x.detach().numpy().ravel().astype(np.float64)
        return bool(attack_success(models, image, y, xv, eps, targeted,
                                   num_classes=num_classes)["success"])

    for mode in ("adam", "sign"):
        x = torch.full_like(a, 0.5, requires_grad=True)
        opt = torch.optim.Adam([x], lr=0.01) if mode == "adam" else None
        for step in range(steps + 1):
            adv = _nchw(torch.clamp(a + eps * (2 * x - 1), 0, 1))
            z = torch.stack([m(adv)[0] for m in nets])  # N x C
            if step:  # x after `step` updates: do the averaged logits say fooled?
                pred = int(z.detach().mean(0).argmax())
                if (pred == cls if targeted else pred != y) and judge(x):
                    return True
            if step == steps:
                break
            zo = z.clone()
            zo[:, cls] = -1e9
            margins = zo.max(1).values - z[:, cls] if targeted else z[:, cls] - zo.max(1).values
            loss = margins.mean()
            if opt is not None:
                opt.zero_grad()
                loss.backward()
                opt.step()
            else:
                (g,) = torch.autograd.grad(loss, x)
                x = (x - g.sign() / 20).detach().requires_grad_(True)
            with torch.no_grad():
                x.clamp_(0, 1)
    return False


def reference(run: Path, data_dir: str | None = None, steps: int = STEPS,
              cache: dict[tuple[Any, ...], Any] | None = None) -> dict[str, Any]:
    """The white-box count of one `fedzoo attack` run (the content of whitebox.json)."""
    start = time.perf_counter()
    s = json.loads((run / "summary.json").read_text())
    p = s["problem"]
    cache = {} if cache is None else cache
    key = (p["dataset"], data_dir)
    if key not in cache:
        cache[key] = load_dataset(p["dataset"], data_dir)
    data = cache[key]
    models = train_client_models(data, p["num_clients"], p["portion"], p["model_seed"],
                                 data_dir=data_dir)
    num_classes = int(models.meta.get("num_classes", 10))
    with torch_threads(1):
        hits = [
            fooled(models, data.x_test[i], int(data.y_test[i]), s["epsilon"], s["targeted"],
                   steps, num_classes)
            for i in s["images"]
        ]
    return {
        "run": run.name,
        "dataset": p["dataset"],
        "num_clients": p["num_clients"],
        "portion": p["portion"],
        "model_seed": p["model_seed"],
        "epsilon": s["epsilon"],
        "targeted": s["targeted"],
        "images": list(s["images"]),
        "attackable": int(sum(hits)),
        "total": len(hits),
        "not_attackable": [i for i, h in zip(s["images"], hits) if not h],
        "method": f"white-box PGD on F: Adam (lr 0.01) and sign steps (eps/20), {steps} steps each",
        "steps": steps,
        "wall_s": round(time.perf_counter() - start, 2),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="whitebox_reference.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="`fedzoo attack` output directories")
    parser.add_argument("--data-dir", default=None, help="directory of mnist / cifar10 files")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the JSON (one run only; default RUN_DIR/whitebox.json)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"steps per mode (default {STEPS})")
    args = parser.parse_args(argv)
    if args.out is not None and len(args.runs) != 1:
        parser.error("--out needs exactly one RUN_DIR")
    cache: dict[tuple[Any, ...], Any] = {}
    for run in args.runs:
        r = reference(run, args.data_dir, args.steps, cache)
        print(
            f"{run.name}: white-box attackable {r['attackable']}/{r['total']} "
            f"(images not attackable: {r['not_attackable']})"
        )
        path = args.out or run / "whitebox.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(r, indent=1) + "\n")
        tmp.replace(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
