r"""The interface of a federated method: hooks that the shared round protocol calls.

A round (docs/design.md §2) is a **train** exchange, then, for methods with
``has_sync``, a **sync** exchange at the new global point. :mod:`fedzoo.protocol` owns
what every method shares: seeding, the query session, validation of every payload,
the local loop of T optimiser steps, query accounting and the server step
x_r = x_{r-1} - η Σ_i p_i (x_{r-1} - x_i). A method says only what differs:

==========================  =========================================================
hook                        what it decides
==========================  =========================================================
``begin_train``             work before the local loop (initial design, GP fit, ...)
``local_train``             replaces the whole local loop (optional; e.g. a population)
``gradient``                the local gradient estimate g at the local iterate x
``correct``                 the corrected direction g_hat (FedProx term, control
                            variates, the FZooS global-surrogate correction)
``after_step``              queries after each local step (the new iterate, active
                            exploration); returns f_i at the new iterate if known
``end_train``               fields added to the train reply and the state kept
``client_sync``             the sync exchange (only with ``has_sync``)
``*_message`` / ``*_spec``  the extra fields each message and reply carries, and their
                            specs (lengths, types) checked by both sides
``query_bound``             the most queries one client may make in one exchange (the
                            round driver stops before a round that could pass a budget)
``server_step``             the new global point (default: the weighted average step)
``aggregate_train/_sync``   how the server combines the extra reply fields
``client_state`` /          what the method keeps between exchanges and how it is
``server_state``            serialised (subclasses of :mod:`fedzoo.state`)
==========================  =========================================================

Every hook is a pure function of its arguments and the states passed in (which it may
update in place); randomness comes only from ``ctx.rng``, which the protocol seeds from
``(seed, round, client, phase)``. Subclass the closest method and override what differs,
as Flower's FedProx does over FedAvg; put the module in :mod:`fedzoo.methods` and it is
registered by its ``name``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from fedzoo.payload import ArraySpec, Payload, ScalarSpec
from fedzoo.state import ClientState, ServerState, Session

if TYPE_CHECKING:
    from fedzoo.config import RunConfig
    from fedzoo.protocol import Aggregate

Spec = dict[str, ArraySpec | ScalarSpec]


@dataclass
class TrainContext:
    """One client's train exchange, as the hooks see it.

    Attributes:
        config: the run configuration.
        state: the client's state (updated in place).
        message: the validated train message.
        session: counts and records every query of this exchange.
        rng: this client's generator for this round and phase.
        client_id: the client (partition) id.
        x_global: the broadcast point x_{r-1}.
        scratch: the method's own values for this exchange (e.g. a fitted surrogate).
    """

    config: RunConfig
    state: ClientState
    message: Payload
    session: Session
    rng: np.random.Generator
    client_id: int
    x_global: np.ndarray
    scratch: dict[str, Any] = field(default_factory=dict)

    @property
    def round(self) -> int:
        return int(self.message["round"])


class Method:
    """A federated zeroth-order method (defaults: no correction, no sync, no extras).

    Class attributes:
        name: the name users pass as ``method`` (unique in the registry).
        summary: one line for ``--help``, the API docs and the README's table.
        rank: position in listings (lower first; built-ins use 10..90).
        has_sync: a second exchange at the new global point in every round.
        exact_gradients: needs objectives with an exact ``gradient`` (references only;
            never offered where the objective is a black box, e.g. the attack).
        attack_variant: in a federated L-inf attack, the registered method run when this
            one is asked for ("" = itself); recorded in the attack's summary.
        attack_defaults: option defaults (kebab-case) an attack uses for this method
            unless the user gives them.
        step_control: what ``step-control = auto`` means for this method
            (:mod:`fedzoo.step_control`).
        options: the :class:`~fedzoo.config.RunConfig` options the method reads beyond
            the shared ones (rounds, local-steps, seed, optimizer, lr, fraction,
            min-replies, aggregation, server-lr).
        client_state / server_state: the state classes (subclasses of
            :mod:`fedzoo.state`).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    rank: ClassVar[int] = 100
    has_sync: ClassVar[bool] = False
    exact_gradients: ClassVar[bool] = False
    step_control: ClassVar[str] = "none"
    attack_variant: ClassVar[str] = ""
    attack_defaults: ClassVar[Mapping[str, Any]] = {}
    options: ClassVar[tuple[str, ...]] = ()
    client_state: ClassVar[type[ClientState]] = ClientState
    server_state: ClassVar[type[ServerState]] = ServerState

    # ---- messages (server -> client) and replies (client -> server) ------------------
    def train_message_spec(self, config: RunConfig, dim: int) -> Spec:
        """Fields of the train message beyond ``{x, round}``."""
        return {}

    def train_message(self, config: RunConfig, state: ServerState) -> Payload:
        """Values of those fields (a field may be left out when it is optional)."""
        return {}

    def train_reply_spec(self, config: RunConfig, dim: int) -> Spec:
        """Fields of the train reply beyond ``{x, num-queries, total-queries, value-start}``."""
        return {}

    def sync_message_spec(self, config: RunConfig, dim: int) -> Spec:
        """Fields of the sync message beyond ``{x, round}``."""
        return {}

    def sync_message(self, config: RunConfig, state: ServerState) -> Payload:
        return {}

    def sync_reply_spec(self, config: RunConfig, dim: int) -> Spec:
        """Fields of the sync reply beyond ``{value, num-queries, total-queries}``."""
        return {}

    # ---- client: the train exchange --------------------------------------------------
    def begin_train(self, ctx: TrainContext) -> None:
        """Before the local loop (after f_i(x_{r-1}) has been queried)."""

    def local_train(self, ctx: TrainContext, value_start: float) -> np.ndarray | None:
        """Replace the shared local loop: return the point to reply as ``x``; None (the
        default) runs the T optimiser steps over ``gradient``/``correct``/``after_step``.
        For methods that do not take local steps (e.g. a population evaluated at once)."""
        return None

    def gradient(self, ctx: TrainContext, x: np.ndarray, fx: float) -> np.ndarray:
        """The local gradient estimate at x (``fx``: f_i(x) when known)."""
        raise NotImplementedError(f"method {self.name!r} defines no gradient estimator")

    def correct(self, ctx: TrainContext, x: np.ndarray, t: int, g: np.ndarray) -> np.ndarray:
        """The direction the optimiser follows at local step t (default: g itself)."""
        return g

    def after_step(self, ctx: TrainContext, x: np.ndarray, fx: float, last: bool) -> float:
        """After local step t moved to x; returns f_i(x) if it was queried, else ``fx``."""
        return fx

    def end_train(self, ctx: TrainContext, reply: Payload) -> None:
        """Add the method's fields to the train reply; keep what the state needs."""

    # ---- client: the sync exchange ---------------------------------------------------
    def client_sync(self, config: RunConfig, session: Session, state: ClientState, message: Payload,
                    rng: np.random.Generator) -> Payload:
        """The sync exchange at x_r: the extra reply fields (the protocol adds the value
        at x_r and the counts)."""
        raise NotImplementedError(f"method {self.name!r} has no sync exchange")

    # ---- server ----------------------------------------------------------------------
    def server_step(self, config: RunConfig, state: ServerState, agg: Aggregate) -> np.ndarray:
        """The new global point from enough valid train replies (default: the server
        step x_{r-1} - server-lr * (x_{r-1} - sum_i p_i x_i), clipped to the box)."""
        x_avg = agg.weighted("x")
        return np.clip(state.x - config.server_lr * (state.x - x_avg), 0.0, 1.0)

    def aggregate_train(self, config: RunConfig, new: ServerState, agg: Aggregate) -> None:
        """Combine the extra train-reply fields into ``new`` (enough replies arrived)."""

    def aggregate_sync(self, config: RunConfig, new: ServerState, agg: Aggregate) -> None:
        """Combine the sync replies into ``new`` (enough replies arrived)."""

    # ---- query accounting ------------------------------------------------------------
    def query_bound(self, config: RunConfig, dim: int, kind: str, first: bool) -> int | None:
        """The most queries one client may make in one exchange of ``kind`` (``train`` or
        ``sync``), f_i at the broadcast point included; ``first``: the client has had no
        reply accepted yet (e.g. an initial design is due). The round driver stops before
        a round whose bound could take the queries past a query budget
        (:mod:`fedzoo.budget`), so the bound must hold whatever the objective returns;
        tests check it for every method. None: unknown, and a run with a query budget is
        refused."""
        return None

    # ---- checks ----------------------------------------------------------------------
    def check_objectives(self, objectives: Any) -> None:
        """Refuse objectives the method cannot use (called before round 1)."""

    def __repr__(self) -> str:
        return f"<method {self.name}>"
