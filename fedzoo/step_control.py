r"""Server-side step control from the clients' *reported* values (no extra query).

Every round the server learns Fᵣ = Σ_i p_i f_i at a global point from replies the
method sends anyway: the sync replies' ``value`` at x_r (methods with a sync exchange),
or the train replies' ``value-start`` at x_{r-1} (single-exchange methods, one round
later), or the final evaluation at x_R. ``step-control``:

* ``none``: the global point is whatever the server step gives (the papers' rule).
* ``incumbent``: the server keeps the best point reported so far, x*, and F*. A point
  whose reported value is below F* becomes the incumbent, and the local learning rate
  scale s grows by ``step-grow`` (at most 1); a point reported above F* is rejected:
  the global point goes back to x* and s shrinks by ``step-shrink``. Clients step with
  ``lr x step-start x s`` (the train message's ``lr-scale`` is ``step-start x s``):
  with ``step-start`` > 1 the steps start wide, the way an evolution strategy's first
  samples do, and every rejected step halves them. Re-evaluating x* itself changes
  nothing. The point a run returns is therefore the best one reported, and history.csv's
  last row is F there.
* ``auto`` (default): the method's own choice (:attr:`Method.step_control`).

Values are compared only when every client replied (with partial participation or a
dropped client the weighted sum is over another set of clients, not F).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fedzoo.config import RunConfig
    from fedzoo.state import ServerState

STEP_CONTROLS = ("auto", "none", "incumbent")
#: ``step-start``: the first round's lr scale (a trust region that starts wide).
STEP_START = 30.0


def active(config: RunConfig) -> bool:
    """Whether incumbent step control runs for this configuration."""
    mode = config.step_control
    if mode == "auto":
        from fedzoo.methods import get_method

        mode = get_method(config.method).step_control
    return mode == "incumbent"


def complete(replied: Mapping[int, object], weights: Mapping[int, float]) -> bool:
    """True when every client with a weight replied (the weighted sum is F)."""
    return set(replied) == {c for c, w in weights.items() if w > 0}


def judge(config: RunConfig, state: ServerState, x: np.ndarray, value: float) -> bool:
    """Update the incumbent of ``state`` with F(x) = value; False if x is rejected."""
    if state.best_x is None or value < state.best_value:
        state.best_x, state.best_value = np.asarray(x, dtype=np.float64).copy(), float(value)
        state.lr_scale = min(1.0, state.lr_scale * config.step_grow)  # relative to step-start
        return True
    if np.array_equal(x, state.best_x):  # the incumbent again: nothing new
        return True
    state.lr_scale = state.lr_scale * config.step_shrink
    return False
