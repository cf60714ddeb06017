"""The attack picture: clean and perturbed images with every client's prediction."""

from __future__ import annotations

import numpy as np
import pytest

from fedzoo_attack.attack_run import ImageOutcome
from fedzoo_attack.report import plot_attack_grid


def outcome(image: int, label: int, point: np.ndarray, success: bool) -> ImageOutcome:
    return ImageOutcome(image, label, success, None, None, 0.3, 1.0, 0.5, 100, 2, 0.1, 1.0,
                        point=point, final_point=point)


def test_the_grid_shows_each_image_clean_and_perturbed_with_the_clients_predictions(tmp_path):
    pytest.importorskip("matplotlib")
    images = [np.full((4, 4), 0.5, np.float32), np.zeros((4, 4), np.float32)]
    seen = []

    def classify(batch):  # two clients: brightness above / below one half
        seen.append(batch.copy())
        mean = batch.reshape(len(batch), -1).mean(axis=1)
        return np.stack([(mean > 0.5).astype(int), (mean >= 0.5).astype(int)])

    results = {"m": [outcome(0, 1, np.ones(16), True), outcome(1, 0, np.full(16, 0.5), False)]}
    path = plot_attack_grid(results, classify, images, 0.3, tmp_path / "grid.png", title="t")
    assert path.stat().st_size > 1000
    assert len(seen) == 2 and all(b.shape == (2, 4, 4) for b in seen)  # clean + one method
    np.testing.assert_allclose(seen[0][1], 0.8, rtol=1e-6)  # x = 1: +eps everywhere
    np.testing.assert_allclose(seen[1][1], 0.0)  # x = 0.5: the clean image
