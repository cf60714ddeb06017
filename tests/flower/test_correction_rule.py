"""The correction rule for a client that misses rounds (RELIABILITY.md, "Rules").

A client that missed rounds keeps its own control variate / RFF weights from the last
round it took part in and, when it is back, corrects with the fresh global ones; the
global ones average the clients that replied (weights renormalised over them). Checked on
the protocol functions the engine and the ServerApp both run (``fedzoo.protocol``).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from fedzoo import protocol
from fedzoo.config import RunConfig
from fedzoo.corrections import fzoos_term, scaffold_term
from fedzoo.objectives.problems import make_problem

SMALL = {"rounds": 3, "local-steps": 3, "rff-features": 200, "gp-history": 60, "rff-history": 80,
         "sync-points": 8, "sync-candidates": 30, "explore-candidates": 20, "explore-points": 2,
         "rgf-directions": 5}
WEIGHTS = {0: 0.5, 1: 0.3, 2: 0.2}  # unequal, so renormalising matters
ABSENT = 2


def own(config: RunConfig, state: protocol.ClientState) -> np.ndarray:
    return state.rff_own if config.uses_rff else state.scaffold_own


def global_of(config: RunConfig, server: protocol.ServerState) -> np.ndarray:
    return server.rff_global if config.uses_rff else server.scaffold_c


def one_round(config, problem, server, states, participants, observer=None):
    """A round as the engine runs it; returns the new server state and the replies that
    carried the corrections (train replies for scaffold2 / fzoos-lagged, else sync)."""
    msg = protocol.train_message(config, server)
    replies = {}
    for cid in participants:
        states[cid], replies[cid] = protocol.client_train(
            config, problem.objectives[cid], states[cid], msg, cid, observer=observer
        )
    server, _ = protocol.aggregate_train(config, server, replies, WEIGHTS)
    if config.uses_sync:
        smsg = protocol.sync_message(config, server)
        replies = {}
        for cid in participants:
            states[cid], replies[cid] = protocol.client_sync(
                config, problem.objectives[cid], states[cid], smsg, cid
            )
        server, _ = protocol.aggregate_sync(config, server, replies, WEIGHTS)
    return server, replies


@pytest.mark.parametrize("method", ["scaffold1", "scaffold2", "fzoos", "fzoos-lagged"])
def test_a_client_that_missed_a_round_keeps_its_own_and_corrects_with_the_fresh_global(method):
    config = RunConfig.from_mapping({**SMALL, "method": method})
    key = "rff-weights" if config.uses_rff else "scaffold-ci"
    problem = make_problem("quadratic", dim=6, clients=3, heterogeneity=5.0, seed=1)
    server = protocol.server_init(config, problem.x0)
    states = [protocol.new_client_state(config, problem.dim) for _ in range(3)]

    server, _ = one_round(config, problem, server, states, [0, 1, 2])
    kept = copy.deepcopy(states[ABSENT])
    own_before = own(config, kept).copy()
    assert own_before is not None

    # round 2 without client 2
    server, replies = one_round(config, problem, server, states, [0, 1])
    # (a) the absent client's own correction (and all its state) is unchanged
    assert np.array_equal(own(config, states[ABSENT]), own_before)
    for name, value in kept.to_arrays().items():
        assert np.array_equal(states[ABSENT].to_arrays()[name], value), name
    # (b) the global one is the weighted average of the replying clients, renormalised
    total = WEIGHTS[0] + WEIGHTS[1]
    expected = (WEIGHTS[0] / total) * replies[0][key] + (WEIGHTS[1] / total) * replies[1][key]
    np.testing.assert_allclose(global_of(config, server), expected, rtol=1e-12, atol=1e-15)
    for cid in (0, 1):  # what they sent is their own kept value
        assert np.array_equal(replies[cid][key], own(config, states[cid]))
    assert not np.allclose(global_of(config, server), own_before)  # a different vector
    fresh = global_of(config, server).copy()

    # round 3: client 2 is back and corrects with the fresh global and its old own one
    seen = {}

    def observer(cid, t, x, g, g_hat):
        if cid == ABSENT and t == 1:
            seen.update(x=x.copy(), correction=g_hat - g)

    msg = protocol.train_message(config, server)
    one_round(config, problem, server, states, [0, 1, 2], observer=observer)
    if config.uses_rff:
        rff = protocol.shared_features(problem.dim, config.rff_features,
                                       msg["rff-lengthscale"], msg["rff-seed"])
        expected_correction = fzoos_term(seen["x"], 1, config.gamma, rff, fresh, own_before,
                                         config.gamma_schedule)
    else:
        expected_correction = scaffold_term(fresh, own_before)
    np.testing.assert_allclose(seen["correction"], expected_correction, rtol=1e-10, atol=1e-12)
    assert np.linalg.norm(expected_correction) > 0
