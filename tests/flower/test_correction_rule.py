"""The correction rule for a client that misses rounds (RELIABILITY.md, "Rules").

A client that missed rounds keeps its own correction (control variate, RFF weights)
from the last round it took part in and, when it is back, corrects with the fresh global
one; the global one combines the clients that replied (weights renormalised over them).
Checked for every registered method on the round driver the engine and the ServerApp
both run (:mod:`fedzoo.rounds`), with a transport that leaves one client out.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from fedzoo import protocol
from fedzoo.config import RunConfig
from fedzoo.corrections import fzoos_term, scaffold_term
from fedzoo.engine import ThreadTransport
from fedzoo.methods import get_method, method_names
from fedzoo.methods.fzoos import shared_features
from fedzoo.objectives.problems import make_problem
from fedzoo.payload import ArraySpec
from fedzoo.results import HistoryRecorder
from fedzoo.rounds import RoundDriver
from tests.settings import SMALL_RUN

SMALL = SMALL_RUN
WEIGHTS = {0: 0.5, 1: 0.3, 2: 0.2}  # unequal, so renormalising matters
ABSENT = 2
OWN_KEYS = {"rff-weights": "rff-own", "square-weights": "own-weights"}  # reply key -> state key


class SomeClients(ThreadTransport):
    """Only ``present`` clients reply; keeps the replies of the last exchange of each kind."""

    present: list[int] = [0, 1, 2]

    def exchange(self, kind, message, round_, clients):
        self.replies = getattr(self, "replies", {})
        got = super().exchange(kind, message, round_, [c for c in clients if c in self.present])
        self.replies[kind] = got[0]
        return got


def correction_keys(config: RunConfig, dim: int) -> tuple[str | None, str | None]:
    """(the vector a client sends up, the global one sent down) of the method, if any."""
    method = get_method(config.method)
    up = [k for spec in (method.train_reply_spec(config, dim), method.sync_reply_spec(config, dim))
          for k, s in spec.items() if isinstance(s, ArraySpec)]
    down = [k for k, s in method.train_message_spec(config, dim).items()
            if isinstance(s, ArraySpec) and s.optional]
    return (up[0] if up else None), (down[0] if down else None)


def expected_correction(config, msg, x, own_before, fresh, dim):
    if "rff-weights" in msg:
        rff = shared_features(dim, config.rff_features, msg["rff-lengthscale"], msg["rff-seed"])
        return fzoos_term(x, 1, config.gamma, rff, fresh, own_before,
                          get_method(config.method).schedule(config))
    return scaffold_term(fresh, own_before)


@pytest.mark.parametrize("method", [m for m in method_names() if not get_method(m).exact_gradients])
def test_a_client_that_missed_a_round_keeps_its_own_and_corrects_with_the_fresh_global(method):
    config = RunConfig.from_mapping({**SMALL, "method": method})
    problem = make_problem("quadratic", dim=6, clients=3, heterogeneity=5.0, seed=1)
    states = [protocol.new_client_state(config, problem.dim) for _ in range(3)]
    seen = {}

    def observer(cid, t, x, g, g_hat):
        if cid == ABSENT and t == 1:
            seen.update(x=x.copy(), correction=g_hat - g)

    transport = SomeClients(config, problem, states, None, observer)
    rec = HistoryRecorder()
    rec.start(problem.x0, 3)
    driver = RoundDriver(config, transport, WEIGHTS, rec, protocol.server_init(config, problem.x0))
    up, down = correction_keys(config, problem.dim)

    driver.run_round(1, first=True)
    kept = copy.deepcopy(states[ABSENT])

    transport.present = [0, 1]  # round 2 without client 2
    driver.run_round(2)
    # (a) the absent client's state (its own correction included) is unchanged
    for name, value in kept.to_arrays().items():
        assert np.array_equal(states[ABSENT].to_arrays()[name], value), name
    assert states[ABSENT].to_arrays().keys() == kept.to_arrays().keys()
    if up is None or down is None:  # no correction sent both ways: nothing more to check
        return
    # (b) the global one is the weighted average of the replying clients, renormalised
    replies = next(r for r in transport.replies.values() if all(up in v for v in r.values()) and r)
    total = WEIGHTS[0] + WEIGHTS[1]
    expected = (WEIGHTS[0] / total) * replies[0][up] + (WEIGHTS[1] / total) * replies[1][up]
    msg = protocol.train_message(config, driver.server)
    fresh = msg[down]
    np.testing.assert_allclose(fresh, expected, rtol=1e-12, atol=1e-15)
    own_key = OWN_KEYS.get(up, "scaffold-own")
    own_before = kept.to_arrays()[own_key]
    for cid in (0, 1):  # what they sent is their own kept value
        sent = states[cid].to_arrays()[own_key]
        assert np.array_equal(replies[cid][up], sent)
    assert not np.allclose(fresh, own_before)  # a different vector
    if up == "square-weights":  # fzoos-vertex: the correction judges squares, not a gradient
        return  # (its use is checked in tests/core/test_fzoos_vertex.py)

    # round 3: client 2 is back and corrects with the fresh global and its old own one
    transport.present = [0, 1, 2]
    driver.run_round(3)
    want = expected_correction(config, msg, seen["x"], own_before, fresh, problem.dim)
    np.testing.assert_allclose(seen["correction"], want, rtol=1e-10, atol=1e-12)
    assert np.linalg.norm(want) > 0
