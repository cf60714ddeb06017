"""The federated attack through the Flower app (``fedzoo attack --engine flower``).

:class:`FlowerAttack` is a :data:`fedzoo_attack.attack_run.RemoteRun`: for one method and
one image it submits a run of the fedzoo Flower app to a private local simulation, a
custom problem whose ClientApps each build their own client's CNN margin on the image
with the objective factory of :mod:`fedzoo_attack.federation`
(:meth:`~fedzoo_attack.federation.AttackSpec.run_config`), with ``query-budget`` = the
attack's budget, ``save-points = true`` and no final evaluation, and returns the run's
history rows and global points. The caller judges success on those points (the ServerApp holds no model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedzoo.config import RunConfig
from fedzoo.results import read_history
from fedzoo_attack.federation import AttackSpec
from fedzoo_launch.driver import FlowerSimulation


@dataclass
class FlowerAttack:
    """Runs attacks on the images of one federation (data set, N, P, models, epsilon).

    Attributes:
        simulation: an open :class:`~fedzoo_launch.driver.FlowerSimulation`.
        spec: the attack with any image index (each call sets its own).
        dim: d, the number of pixel values.
        out_dir: each run writes to ``out_dir/<method>/image<id>/`` (history.csv,
            summary.json, points.npy, flower-run.log).
        timeout_s: limit of one run.
    """

    simulation: FlowerSimulation
    spec: AttackSpec
    dim: int
    out_dir: Path
    timeout_s: float = 3600.0
    engine: str = "flower"

    def run_config(self, config: RunConfig, image_id: int, budget: int | None) -> dict[str, Any]:
        spec = AttackSpec(**{**self.spec.__dict__, "image": int(image_id)})
        return {
            **config.to_dict(),
            **spec.run_config(),
            "dim": self.dim,
            "query-budget": int(budget or 0),
            "save-points": True,
            "final-evaluation": False,
        }

    def __call__(
        self, config: RunConfig, image_id: int, budget: int | None
    ) -> tuple[list[dict[str, Any]], np.ndarray]:
        out = self.out_dir / config.method / f"image{image_id}"
        self.simulation.run(
            self.run_config(config, image_id, budget),
            out,
            num_clients=self.spec.num_clients,
            timeout_s=self.timeout_s,
        )
        return read_history(out / "history.csv"), np.load(out / "points.npy")
