"""White-box reference: which benchmark images can be fooled at all within epsilon?

Not a federated or black-box method: projected gradient descent with the exact gradient
of F (the mean of the clients' margins) through the client CNNs (torch autograd), Adam
with the same step as the benchmark (lr 0.01 in x, i.e. 0.02 eps per pixel), 400 steps,
plus sign-gradient PGD (step eps/20, 400 steps). An image is counted as attackable when
either run fools the averaged logits at some step. It shows how far a black-box method's
success rate is from what the threat model allows; its "queries" are gradients and
are not comparable.

Usage: python simulations/attack/whitebox_reference.py RUN_DIR [RUN_DIR ...]
(RUN_DIR: the output of `fedzoo attack`; its images, P, eps and targeting are reused.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from fedzoo_attack.data import load_mnist_5k
from fedzoo_attack.models import torch_threads, train_client_models
from fedzoo_attack.objectives import attack_success


def fooled(models, image, label, eps, targeted, steps=400) -> bool:  # noqa: ANN001
    a = torch.from_numpy(image[None, None].astype(np.float32))
    y = int(label)
    t = (y + 1) % 10
    for mode in ("adam", "sign"):
        x = torch.full_like(a, 0.5, requires_grad=True)
        opt = torch.optim.Adam([x], lr=0.01) if mode == "adam" else None
        for _ in range(steps):
            adv = torch.clamp(a + eps * (2 * x - 1), 0, 1)
            z = torch.stack([m(adv)[0] for m in models.models])  # N x C
            zo = z.clone()
            cls = t if targeted else y
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
                xv = x.detach().numpy().ravel().astype(np.float64)
            if attack_success(models, image, y, xv, eps, targeted)["success"]:
                return True
    return False


def main(argv: list[str]) -> int:
    data = load_mnist_5k()
    for run in map(Path, argv):
        s = json.loads((run / "summary.json").read_text())
        p = s["problem"]
        models = train_client_models(data, p["num_clients"], p["portion"], p["model_seed"])
        with torch_threads(1):
            hits = [
                fooled(models, data.x_test[i], data.y_test[i], s["epsilon"], s["targeted"])
                for i in s["images"]
            ]
        print(
            f"{run.name}: white-box attackable {sum(hits)}/{len(hits)} "
            f"(images not attackable: {[i for i, h in zip(s['images'], hits) if not h]})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
