"""The ``fedzoo`` command line (top layer; the core ``fedzoo`` never imports it).

- :mod:`fedzoo_cli.main`: the entry point (``fedzoo = "fedzoo_cli.main:main"``) with
  ``run``, ``compare`` and ``oracle``, plus the commands of :mod:`fedzoo_cli.attack`;
- :mod:`fedzoo_cli.attack`: ``attack``, ``attack prepare`` and ``metric``;
- :mod:`fedzoo_cli.common`: helpers both use (one flag per run-configuration option).

Layers: ``fedzoo`` -> ``fedzoo_attack`` -> ``server`` / ``client`` -> ``launch`` ->
``fedzoo_cli`` -> ``simulations``; nothing imports upward (tests/core/test_layers.py).
``python -m fedzoo_cli`` runs the same command line.
"""
