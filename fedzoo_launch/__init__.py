"""Local tooling around the Flower app: not part of the app itself.

Starts and stops Flower processes on this machine (a SuperLink, SuperNodes, the ``flwr``
CLI) for the command line (``fedzoo run --engine flower``, ``fedzoo attack --engine
flower``), the deployment runner, the benchmarks and the end-to-end tests. It is not in
the Flower app bundle (``[tool.flwr.app].fab-include`` names ``fedzoo``,
``fedzoo_attack``, ``fedzoo_server``, ``fedzoo_client``, ``fedzoo_oracle`` and the generated
code only), and the apps never import it.

- :mod:`fedzoo_launch.local`: a :class:`~fedzoo_launch.local.Session` of local Flower processes
  (private ``FLWR_HOME``, free ports, offline environment), TLS material and SuperNode
  keys, :func:`~fedzoo_launch.local.stage_app`.
- :mod:`fedzoo_launch.processes`: stop every process a Flower component spawned, detached ones
  included, by the session's environment marker.
- :mod:`fedzoo_launch.driver`: :func:`~fedzoo_launch.driver.run_flower` and
  :class:`~fedzoo_launch.driver.FlowerSimulation`, a private local simulation for one or many
  runs.
- :mod:`fedzoo_launch.attack`: :class:`~fedzoo_launch.attack.FlowerAttack`, the attack's runs (one per
  image and method) through the Flower app in such a simulation.
"""
