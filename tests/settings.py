"""Run settings shared by the tests: small enough to be fast, still exercising every part
(surrogate, exploration, RFF correction, finite differences)."""

#: Algorithm options of a light run (the Flower fixtures add dim / num-clients).
LIGHT = {"local-steps": 3, "rff-features": 200, "gp-history": 60, "rff-history": 80,
         "sync-points": 8, "sync-candidates": 30, "explore-candidates": 20, "explore-points": 2,
         "rgf-directions": 5, "ng-batch": 8}

#: A light run of 3 rounds (RunConfig keys).
SMALL_RUN = {"rounds": 3, **LIGHT}
