"""Small CNN classifiers for the federated attack, trained per client (imports torch).

Each of N clients owns a CNN trained only on its class-portion split of the training
images (:func:`fedzoo_attack.data.class_portion_split`): int(P * 10) classes, disjoint
samples. Training is CPU-only, seeded and deterministic; trained weights are stored as
float16 ``.npz`` files (never pickles) keyed by (data set, N, P, seed, architecture) in
the cache directory, and small reference weights for MNIST-5k (N = 10, P = 0.5 and 0.7)
ship in ``fedzoo_attack/reference_weights/`` so tests and default runs never train.

Reproduce the reference weights with::

    python -m fedzoo_attack.models --prepare --reference

Architecture ``cnn`` (26.7k parameters on 28 x 28 inputs)::

    conv3x3(C -> 8) - ReLU - maxpool2 - conv3x3(8 -> 16) - ReLU - maxpool2
    - flatten (16 * H/4 * W/4) - linear(-> 32) - ReLU - linear(-> 10)

Inputs are images in [0, 1] in channels-first layout (``n x C x H x W``); use
:func:`images_to_tensor` to convert the data sets' channels-last arrays.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedzoo.errors import ConfigError, ShapeError, UnknownNameError
from fedzoo_attack.data import (
    ImageDataset,
    class_portion_split,
    client_classes,
    default_cache_dir,
    load_dataset,
)

logger = logging.getLogger(__name__)

REFERENCE_DIR = Path(__file__).resolve().parent / "reference_weights"
WEIGHTS_FORMAT = 1

# Architecture registry: name -> constructor keywords of SmallCNN.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "cnn": {"channels": (8, 16), "hidden": 32},
}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of client training (all part of the cache key's metadata).

    Attributes:
        epochs: passes over the client's training samples.
        batch_size: mini-batch size.
        lr: Adam learning rate.
        weight_decay: Adam (L2) weight decay.
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if int(self.epochs) != self.epochs or self.epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}.")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}.")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}.")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")


# --------------------------------------------------------------------------------------
# Threads, layout, the network
# --------------------------------------------------------------------------------------
def available_cpus() -> int:
    """CPUs this process may run on (respects affinity masks and containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


DEFAULT_THREADS = 1


@contextmanager
def torch_threads(num_threads: int | None = None) -> Iterator[int]:
    """Run the block with torch limited to ``num_threads`` intra-op threads, then restore.

    The default is ``DEFAULT_THREADS`` (1), overridable by ``$FEDZOO_TORCH_THREADS``, and
    never more than the CPUs available. These networks are tiny: intra-op parallelism
    buys nothing and, on a small shared box, costs a lot (measured on a loaded 2-core
    machine: one training epoch took 3.3 s with 2 threads, 0.09 s with 1).
    """
    if num_threads is None:
        env = os.environ.get("FEDZOO_TORCH_THREADS")
        num_threads = int(env) if env else DEFAULT_THREADS
    if int(num_threads) < 1:
        raise ConfigError(f"num_threads must be >= 1, got {num_threads!r}.")
    n = min(int(num_threads), available_cpus())
    previous = torch.get_num_threads()
    if n != previous:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """float32 ``n x C x H x W`` tensor from ``n x H x W`` (grey) or ``n x H x W x 3`` images."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        return torch.from_numpy(np.ascontiguousarray(x[:, None, :, :]))
    if x.ndim == 4:
        return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))
    raise ShapeError(f"Expected images as n x H x W or n x H x W x C, got shape {x.shape}.")


class SmallCNN(nn.Module):
    """Two conv-ReLU-maxpool blocks and a two-layer head (see the module docstring).

    Args:
        image_shape: ``(H, W)`` for grey or ``(H, W, C)`` for colour images (H, W
            divisible by 4).
        num_classes: logits produced.
        channels: output channels of the two conv layers.
        hidden: width of the hidden linear layer.
        device: where parameters are created; ``"meta"`` allocates nothing (used before
            seeded initialisation, so building a model never touches torch's global RNG).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int = 10,
        channels: Sequence[int] = (8, 16),
        hidden: int = 32,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        shape = tuple(int(s) for s in image_shape)
        if len(shape) == 2:
            shape = (*shape, 1)
        if len(shape) != 3 or shape[0] % 4 or shape[1] % 4:
            raise ShapeError(
                f"image_shape must be (H, W) or (H, W, C) with H, W divisible by 4, got "
                f"{tuple(image_shape)}."
            )
        h, w, c = shape
        c1, c2 = (int(v) for v in channels)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_classes = int(num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1, device=device),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, device=device),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(c2 * (h // 4) * (w // 4), hidden, device=device),
            nn.ReLU(),
            nn.Linear(hidden, num_classes, device=device),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (``n x num_classes``) of images ``x`` (``n x C x H x W`` in [0, 1])."""
        return self.head(self.features(x))


def build_model(
    arch: str,
    image_shape: Sequence[int],
    num_classes: int = 10,
    generator: torch.Generator | None = None,
) -> SmallCNN:
    """A model of architecture ``arch``, initialised from ``generator``.

    Weights use PyTorch's default scheme (Kaiming-uniform with a = sqrt(5), biases
    U(-1/sqrt(fan_in), 1/sqrt(fan_in))), but drawn from ``generator`` so that torch's
    global RNG is never consumed. Without a generator the parameters are zeros (to be
    overwritten by loaded weights).
    """
    try:
        kwargs = ARCHITECTURES[arch]
    except KeyError:
        raise UnknownNameError(
            f"Unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}."
        ) from None
    model = SmallCNN(image_shape, num_classes, device="meta", **kwargs)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                if generator is None:
                    module.weight.zero_()
                    module.bias.zero_()
                    continue
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                fan_in = module.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return model.eval()


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits (float32, ``n x C``) of ``model`` on data-set images (channels last)."""
    model.eval()
    x = images_to_tensor(images)
    out = [model(x[s : s + batch_size]) for s in range(0, x.shape[0], batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


class TorchClassifier:
    """A torch module as a black-box classifier: numpy images in, numpy logits out.

    Args:
        model: maps ``n x C x H x W`` float32 tensors in [0, 1] to ``n x classes`` logits.
        batch_size: images per forward pass.
        num_threads: torch threads during a call (see :func:`torch_threads`).

    Calling it with ``n x H x W`` (grey) or ``n x H x W x C`` images returns float32
    logits ``n x classes``, computed under ``torch.no_grad``.
    """

    def __init__(
        self, model: nn.Module, batch_size: int = 256, num_threads: int | None = None
    ) -> None:
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}.")
        self.model = model.eval()
        self.batch_size = int(batch_size)
        self.num_threads = num_threads

    def __call__(self, images: np.ndarray) -> np.ndarray:
        with torch_threads(self.num_threads):
            return predict_logits(self.model, images, self.batch_size)


@contextmanager
def _deterministic() -> Iterator[None]:
    """Enable torch's deterministic algorithms inside the block, restoring the setting."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _client_seed(seed: int, client: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(client), 31]).generate_state(1)[0])


def round_to_float16(model: nn.Module) -> None:
    """Round every parameter to float16 precision in place (as stored on disk)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))


def train_model(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    generator: torch.Generator,
) -> nn.Module:
    """Train ``model`` with Adam and cross-entropy on ``images`` / ``labels``.

    Mini-batches are drawn by ``torch.randperm(generator=generator)``; nothing else is
    random, so a seed fixes the result (CPU, deterministic algorithms enabled).
    """
    x = images_to_tensor(images)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    if x.shape[0] == 0:
        raise ConfigError("Cannot train a client model on zero samples.")
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    with _deterministic():
        for _ in range(config.epochs):
            order = torch.randperm(x.shape[0], generator=generator)
            for s in range(0, x.shape[0], config.batch_size):
                idx = order[s : s + config.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
    return model.eval()


# --------------------------------------------------------------------------------------
# A federation of client models
# --------------------------------------------------------------------------------------
@dataclass
class ClientModels:
    """The N client models of one (data set, N, P, seed, arch) configuration.

    Behaves as a sequence of models (``len``, indexing, iteration).

    Attributes:
        models: N torch modules in eval mode (float32, parameters float16-exact).
        client_classes: the classes each model was trained on.
        meta: the configuration and the training report (``meta["report"]``: one dict
            per client with ``client, classes, num_train, seconds, acc_own, acc_all``).
    """

    models: list[nn.Module]
    client_classes: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.models)

    def __getitem__(self, i: int) -> nn.Module:
        return self.models[i]

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self.models)

    @property
    def report(self) -> list[dict[str, Any]]:
        """Per-client training report (seconds, accuracies); empty if unknown."""
        return list(self.meta.get("report", []))


def weights_filename(dataset: str, num_clients: int, portion: float, seed: int, arch: str) -> str:
    """File name keyed by (data set, N, P, seed, arch), e.g. ``mnist5k-n10-p0.5-s0-cnn.npz``."""
    return f"{dataset}-n{int(num_clients)}-p{float(portion):g}-s{int(seed)}-{arch}.npz"


def save_client_models(path: str | os.PathLike[str], client_models: ClientModels) -> Path:
    """Write the models' parameters (float16) and metadata (JSON) to an ``.npz`` file.

    Keys: ``client003.head.2.weight`` etc., and ``meta.json`` (UTF-8 bytes as uint8).
    Written atomically (temp file + rename). No pickles.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for i, model in enumerate(client_models.models):
        for name, tensor in model.state_dict().items():
            arrays[f"client{i:03d}.{name}"] = tensor.detach().numpy().astype(np.float16)
    meta = dict(client_models.meta)
    meta.pop("path", None)  # where a file was read from is not part of it
    meta["client_classes"] = [[int(c) for c in cls] for cls in client_models.client_classes]
    arrays["meta.json"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; weights files are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_client_models(path: str | os.PathLike[str]) -> ClientModels:
    """Read models written by :func:`save_client_models` (``allow_pickle=False``).

    Raises:
        ConfigError: the file is missing or not a fedzoo weights file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Model weights file {str(path)!r} does not exist.")
    with np.load(path, allow_pickle=False) as npz:
        if "meta.json" not in npz.files:
            raise ConfigError(f"{path}: not a fedzoo weights file (no meta.json entry).")
        meta = json.loads(npz["meta.json"].tobytes().decode())
        if meta.get("format") != WEIGHTS_FORMAT:
            raise ConfigError(
                f"{path}: weights format {meta.get('format')!r}, expected {WEIGHTS_FORMAT}."
            )
        models = []
        for i in range(int(meta["num_clients"])):
            model = build_model(meta["arch"], meta["image_shape"], meta["num_classes"])
            prefix = f"client{i:03d}."
            state = {
                k[len(prefix) :]: torch.from_numpy(npz[k].astype(np.float32))
                for k in npz.files
                if k.startswith(prefix)
            }
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as err:
                raise ConfigError(
                    f"{path}: client {i} weights do not fit {meta['arch']}: {err}"
                ) from err
            models.append(model.eval())
    classes = [np.asarray(c, dtype=np.int64) for c in meta["client_classes"]]
    return ClientModels(models, classes, meta)


def evaluate_client_models(
    client_models: ClientModels | Sequence[nn.Module],
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Test accuracies: per client on its own classes and on all classes, and ensemble.

    Args:
        client_models: the models (a :class:`ClientModels` supplies ``classes``).
        images: test images (channels last), labels: their labels.
        classes: classes per client (default: ``client_models.client_classes``).

    Returns:
        ``{"acc_own": [...], "acc_all": [...], "ensemble_acc": float}``; ``acc_own`` is the
        accuracy on test images whose label is among the client's classes, and the
        ensemble predicts by the argmax of the clients' averaged logits.
    """
    models = list(client_models)
    if classes is None:
        classes = getattr(client_models, "client_classes", None)
    labels = np.asarray(labels)
    logits = [predict_logits(m, images) for m in models]
    acc_own, acc_all = [], []
    for i, lg in enumerate(logits):
        correct = lg.argmax(axis=1) == labels
        acc_all.append(float(correct.mean()))
        if classes is not None:
            own = np.isin(labels, classes[i])
            acc_own.append(float(correct[own].mean()) if own.any() else float("nan"))
    ensemble = np.mean(logits, axis=0).argmax(axis=1) == labels
    return {"acc_own": acc_own, "acc_all": acc_all, "ensemble_acc": float(ensemble.mean())}


def _progress_default(message: str) -> None:
    logger.info("%s", message)


def _train_from_scratch(
    data: ImageDataset,
    num_clients: int,
    portion: float,
    seed: int,
    arch: str,
    config: TrainConfig,
    progress: Callable[[str], None],
) -> ClientModels:
    split_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 17]))
    parts = class_portion_split(
        data.y_train, num_clients, portion, split_rng, num_classes=data.num_classes
    )
    classes = client_classes(num_clients, portion, data.num_classes)
    models, report = [], []
    for i, idx in enumerate(parts):
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(_client_seed(seed, i))
        model = build_model(arch, data.image_shape, data.num_classes, generator=gen)
        train_model(model, data.x_train[idx], data.y_train[idx], config, gen)
        round_to_float16(model)
        seconds = time.perf_counter() - start
        ev = evaluate_client_models([model], data.x_test, data.y_test, [classes[i]])
        report.append(
            {
                "client": i,
                "classes": [int(c) for c in classes[i]],
                "num_train": int(idx.size),
                "seconds": round(seconds, 3),
                "acc_own": round(ev["acc_own"][0], 4),
                "acc_all": round(ev["acc_all"][0], 4),
            }
        )
        done = round(20 * (i + 1) / num_clients)
        progress(
            f"[{'#' * done}{'.' * (20 - done)}] {data.name} N={num_clients} P={portion:g} "
            f"client {i + 1}/{num_clients}: "
            f"classes {report[-1]['classes']}, {idx.size} samples, {seconds:.2f} s, "
            f"test acc own classes {ev['acc_own'][0]:.3f}, all classes {ev['acc_all'][0]:.3f}"
        )
        models.append(model)
    ensemble = evaluate_client_models(models, data.x_test, data.y_test, classes)["ensemble_acc"]
    progress(
        f"[{data.name} N={num_clients} P={portion:g}] ensemble test accuracy {ensemble:.3f}, "
        f"{np.mean([r['seconds'] for r in report]):.2f} s per model"
    )
    meta = {
        "format": WEIGHTS_FORMAT,
        "dataset": data.name,
        "fingerprint": data.fingerprint(),
        "num_clients": int(num_clients),
        "portion": float(portion),
        "seed": int(seed),
        "arch": arch,
        "image_shape": list(data.image_shape),
        "num_classes": int(data.num_classes),
        "train": {
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "lr": config.lr,
            "weight_decay": config.weight_decay,
        },
        "report": report,
        "ensemble_acc": round(ensemble, 4),
        "torch_version": torch.__version__,
    }
    return ClientModels(models, classes, meta)


def _matches(meta: dict[str, Any], data: ImageDataset, config: TrainConfig | None) -> bool:
    """Stored weights fit: same data (fingerprint) and, if ``config`` is given, trained so."""
    if meta.get("fingerprint") != data.fingerprint():
        return False
    return config is None or meta.get("train") == {
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "weight_decay": config.weight_decay,
    }


def train_client_models(
    dataset: str | ImageDataset = "mnist5k",
    num_clients: int = 10,
    portion: float = 0.5,
    seed: int = 0,
    epochs: int | None = None,
    *,
    arch: str = "cnn",
    config: TrainConfig | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    use_reference: bool = True,
    num_threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    allow_training: bool = True,
) -> ClientModels:
    """The N client models for (data set, N, P, seed, arch): loaded if stored, else trained.

    Lookup order: the committed reference weights (``reference_weights/``), then the
    cache (``cache_dir``, default :func:`~fedzoo_attack.data.default_cache_dir` ``/models``);
    a stored file is used only when its data fingerprint matches and, if ``config`` or
    ``epochs`` is given, its training configuration too (without them, weights prepared
    with any settings, e.g. by ``fedzoo attack prepare --epochs 5``, are used).
    Otherwise each client's model is trained on its class-portion split of the training
    images (split seeded by ``seed``; model i seeded by ``(seed, i)``), rounded to float16
    precision and, with ``use_cache``, saved.

    Args:
        dataset: an :class:`~fedzoo_attack.data.ImageDataset` or a name for
            :func:`~fedzoo_attack.data.load_dataset`.
        num_clients: N.
        portion: P; each client trains on int(P * 10) classes.
        seed: seed of the split and of the models' initialisation and batches.
        epochs: shorthand overriding ``config.epochs``.
        arch: architecture name (see ``ARCHITECTURES``).
        config: training hyper-parameters (default :class:`TrainConfig`).
        data_dir: directory for ``mnist`` / ``cifar10`` when ``dataset`` is a name.
        cache_dir: cache root.
        use_cache: read and write the cache.
        use_reference: consider the committed reference weights.
        num_threads: torch threads while training (default: see :func:`torch_threads`).
        progress: called with one line per trained model (default: logging at INFO).
        allow_training: False raises FileNotFoundError instead of training (a client
            process must never train minutes long behind a federation's back).

    Returns:
        A :class:`ClientModels`; ``meta["report"]`` holds seconds per model and test
        accuracies (on the client's own classes and on all classes).
    """
    data = dataset if isinstance(dataset, ImageDataset) else load_dataset(dataset, data_dir)
    any_training = config is None and epochs is None  # stored weights of any training run do
    config = config or TrainConfig()
    if epochs is not None:
        config = TrainConfig(epochs, config.batch_size, config.lr, config.weight_decay)
    client_classes(num_clients, portion, data.num_classes)  # validates N and P early
    name = weights_filename(data.name, num_clients, portion, seed, arch)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    candidates = ([REFERENCE_DIR / name] if use_reference else []) + (
        [root / "models" / name] if use_cache else []
    )
    for path in candidates:
        if not path.is_file():
            continue
        try:
            stored = load_client_models(path)
        except (ConfigError, OSError, ValueError, KeyError) as err:
            logger.warning("Ignoring unreadable weights %s: %s", path, err)
            continue
        if _matches(stored.meta, data, None if any_training else config):
            logger.info("Loaded %d client models from %s.", len(stored), path)
            stored.meta["path"] = str(path.resolve())  # where they came from (not saved)
            return stored
        logger.info("Stored weights %s were trained differently; retraining.", path)
    if not allow_training:
        raise FileNotFoundError(
            f"No stored client models {name} (looked in {', '.join(str(p.parent) for p in candidates)})."
        )
    with torch_threads(num_threads):
        result = _train_from_scratch(
            data, num_clients, portion, seed, arch, config, progress or _progress_default
        )
    if use_cache:
        try:
            written = save_client_models(root / "models" / name, result)
            result.meta["path"] = str(written.resolve())
        except OSError as err:
            logger.warning("Could not cache client models in %s: %s", root, err)
    return result


def reference_weights_path(
    portion: float, num_clients: int = 10, seed: int = 0, arch: str = "cnn"
) -> Path:
    """Path of the committed MNIST-5k reference weights for (N, P, seed, arch)."""
    return REFERENCE_DIR / weights_filename("mnist5k", num_clients, portion, seed, arch)


def load_reference_models(
    portion: float, num_clients: int = 10, seed: int = 0, arch: str = "cnn"
) -> ClientModels:
    """The committed MNIST-5k client models (N = 10, P in {0.5, 0.7}, seed 0).

    Raises:
        ConfigError: no reference weights exist for this configuration.
    """
    path = reference_weights_path(portion, num_clients, seed, arch)
    if not path.is_file():
        available = sorted(p.name for p in REFERENCE_DIR.glob("*.npz"))
        raise ConfigError(
            f"No reference weights for N={num_clients}, P={portion}, seed={seed}, "
            f"arch={arch} ({path.name}); available: {available}. Train them with "
            "train_client_models(...) or `python -m fedzoo_attack.models --prepare`."
        )
    return load_client_models(path)


# --------------------------------------------------------------------------------------
# Command line: python -m fedzoo_attack.models --prepare ...
# --------------------------------------------------------------------------------------
def prepare(
    dataset: str = "mnist5k",
    num_clients: int = 10,
    portions: Sequence[float] = (0.5, 0.7),
    seed: int = 0,
    *,
    arch: str = "cnn",
    config: TrainConfig | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    num_threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Train (never load) the client models for each portion and write weights files.

    Args:
        dataset, num_clients, seed, arch, config, data_dir: as in
            :func:`train_client_models`.
        portions: the values of P to prepare.
        out_dir: where the ``.npz`` files go (default: the cache's ``models/``).
        progress: one line per trained model (seconds, test accuracies).

    Returns:
        The written paths.
    """
    data = load_dataset(dataset, data_dir)
    out = Path(out_dir) if out_dir is not None else default_cache_dir() / "models"
    report = progress or _progress_default
    written = []
    for portion in portions:
        result = train_client_models(
            data,
            num_clients,
            portion,
            seed,
            arch=arch,
            config=config,
            use_cache=False,
            use_reference=False,
            num_threads=num_threads,
            progress=report,
        )
        path = save_client_models(
            out / weights_filename(data.name, num_clients, portion, seed, arch), result
        )
        report(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB)")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m fedzoo_attack.models``."""
    parser = argparse.ArgumentParser(
        prog="python -m fedzoo_attack.models",
        description="Train the per-client attack models and write their weights.",
    )
    parser.add_argument("--prepare", action="store_true", help="train and write weights")
    parser.add_argument("--dataset", default="mnist5k", choices=["mnist5k", "digits", "mnist", "cifar10"])
    parser.add_argument("--data-dir", default=None, help="directory for mnist / cifar10")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--portions", type=float, nargs="+", default=[0.5, 0.7])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arch", default="cnn", choices=sorted(ARCHITECTURES))
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 1)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--out", default=None, help="output directory (default: cache/models)")
    group.add_argument(
        "--reference", action="store_true", help=f"write into the package ({REFERENCE_DIR})"
    )
    args = parser.parse_args(argv)
    if not args.prepare:
        parser.print_help(sys.stderr)
        return 2

    def to_stderr(message: str) -> None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    prepare(
        args.dataset,
        args.clients,
        args.portions,
        args.seed,
        arch=args.arch,
        config=TrainConfig(args.epochs, args.batch_size, args.lr),
        data_dir=args.data_dir,
        out_dir=REFERENCE_DIR if args.reference else args.out,
        num_threads=args.threads,
        progress=to_stderr,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
