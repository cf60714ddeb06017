"""The limits every run and every message is held to, in one place (docs/design.md §6.6).

Shared by the in-process engine, the Flower run-config (:mod:`fedzoo_server.settings`) and the
payload checks (:mod:`fedzoo.payload`), so that a value one of them accepts the others
accept too.

**Sizes** (checked before anything is allocated, :meth:`fedzoo.config.RunConfig.check_limits`
and :func:`fedzoo.objectives.problems.make_problem`): every array a run sends or keeps
(a reply's ``x``, a client's history, candidate sets, a problem's N x d coefficients) has
at most :data:`MAX_ARRAY_ELEMENTS` elements (400 MB of float64), the longest array a reply
may carry; working matrices that never travel (the M x d random-feature map, the
coordinate estimator's d x d directions) at most :data:`MAX_WORK_ELEMENTS`.

**Magnitudes** of what a client sends (:class:`fedzoo.payload.ArraySpec` /
:class:`~fedzoo.payload.ScalarSpec`): an honest client sends values of its own objective,
which must stay far from float64's overflow for the computations that square them
(variances of the GP and RFF standardisation, Adam's second moment, the norms of
``aggregation = clip``); see :data:`MAX_ABS_VALUE` and :data:`MAX_ABS_ARRAY`.
"""

from __future__ import annotations

#: The most elements of one array: in a reply, and of any array a run's options make.
MAX_ARRAY_ELEMENTS = 50_000_000

#: The most elements of a working matrix a run's options make that never travels (the
#: M x d random-feature map, the coordinate estimator's d x d directions): 2 GB of float64.
MAX_WORK_ELEMENTS = 250_000_000

#: Clients of one federation (one state, one thread-pool task, one Flower node each).
MAX_CLIENTS = 10_000

#: Rounds of one run: the history rows travel in every checkpoint's header.
MAX_ROUNDS = 100_000

#: Local steps per round, and the restarts of a first GP fit (each one an optimisation).
MAX_LOCAL_STEPS = 100_000
MAX_GP_RESTARTS = 1_000

#: Heterogeneity C of the synthetic problems (coefficients 1 + C (Dir - 1/N); values
#: grow like C: beyond 1e6 they say nothing more about heterogeneity).
MAX_HETEROGENEITY = 1e6

#: Every integer option and seed: what an int64 holds (npz arrays, Flower's run-config).
MAX_INT = 2**63 - 1

#: Every float option without a tighter range: nothing in the unit box needs more, and
#: products of such options stay finite.
MAX_FLOAT_OPTION = 1e12

#: |f| a reply may report (``value``, ``value-start``, the candidates' values): 1e100 is
#: 90 orders of magnitude beyond any objective of the library; squares (variances,
#: Adam's second moments) stay below float64's 1.8e308. A client whose objective is
#: larger is dropped from the exchange with the reason logged.
MAX_ABS_VALUE = 1e100

#: |entry| of an array a reply may carry when its spec names no tighter bound (control
#: variates, ...): squared and summed over :data:`MAX_ARRAY_ELEMENTS` entries it stays
#: finite (1e300 x 5e7 < 1.8e308), so means, medians and norms of accepted replies do.
MAX_ABS_ARRAY = 1e150

#: float32's largest finite number is 3.4e38; a float32 fast path is taken only for
#: values below this (leaving room for sums of many products).
FLOAT32_SAFE = 1e30
