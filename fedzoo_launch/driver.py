"""Run the fedzoo Flower app in a private local simulation and return its summary.

:func:`run_flower` is what ``fedzoo run --engine flower`` calls. It never touches the
user's ``~/.flwr`` nor Flower's fixed default ports:

1. a private ``FLWR_HOME`` (temporary directory) whose ``config.toml`` has one
   connection, ``fedzoo``, to
2. its own ``flower-superlink --insecure --simulation`` on a free 127.0.0.1 port
   (started with ``start_new_session=True``);
3. ``flwr run <app> fedzoo --run-config ... --federation-config
   "num-supernodes=N client-resources-num-cpus=1"`` submits the run (``<app>``: a
   staged copy of the app's files, :func:`fedzoo_launch.local.stage_app`, which builds the
   same FAB as the repository root without walking ``.venv``);
4. the final status comes from ``flwr ls fedzoo --run-id ID --format json`` (``flwr run``
   exits 0 even when the ServerApp crashed) and must be ``finished:completed``; the run
   log (``flwr log --show``) is saved as ``out_dir/flower-run.log`` and ``summary.json``
   is read from ``out_dir``;
5. in a ``finally``: the SuperLink and every process it spawned (``flower-superexec`` is
   detached into its own session, then ``flwr-simulation`` and Ray) are stopped by PID:
   the SuperLink's group, then every process carrying this run's
   ``FEDZOO_FLOWER_SESSION`` marker (:mod:`fedzoo_launch.local`, :mod:`fedzoo_launch.processes`).
   A driver killed without its ``finally`` (SIGKILL) leaves nothing either: the
   SuperLink gets a parent-death SIGTERM and the session's watchdog
   (:mod:`fedzoo_launch.watchdog`) kills every process of the run at once (Ray's agents
   included: by marker, descent and process group) and removes the temporary
   directory, so the federation stops with its driver; ``fedzoo run`` turns SIGTERM
   into a normal exit through the ``finally``.
6. one writer per output directory: a run is refused at once while another process
   holds ``<out>/.fedzoo.lock`` (:func:`fedzoo.checkpoint.directory_lock`, which the
   ServerApp takes for the run).

Environment of every process: see :func:`fedzoo_launch.local.flower_env` (offline, no
telemetry, no update check, short ``RAY_TMPDIR``, one BLAS thread).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedzoo.checkpoint import check_unlocked
from fedzoo_launch.local import FlowerLaunchError, Session
from fedzoo_server.settings import parse_run_config

log = logging.getLogger(__name__)

FlowerDriverError = FlowerLaunchError


class FlowerSimulation:
    """A private local SuperLink (``--simulation``) for several runs, stopped on exit.

    ``run_flower`` starts one for a single run; an experiment of many runs (an attack on
    K images x several methods) keeps one and pays the SuperLink start-up once::

        with FlowerSimulation() as sim:
            for ...:
                summary = sim.run(run_config, out_dir, num_clients=10)
    """

    def __init__(self, *, keep_workdir: bool = False, start_timeout_s: float = 60.0) -> None:
        self.keep_workdir, self.start_timeout_s = keep_workdir, start_timeout_s
        self.workdir: Path | None = None
        self.session: Session | None = None

    def __enter__(self) -> FlowerSimulation:
        self.workdir = Path(tempfile.mkdtemp(prefix="fedzoo-flwr-"))
        self.session = Session(self.workdir, simulation=True)
        if not self.keep_workdir:
            self.session.remove_on_orphan.append(self.workdir)
        try:
            self.session.start_superlink(timeout_s=self.start_timeout_s)
        except BaseException:
            self.__exit__()
            raise
        log.info("flower simulation: superlink %s, workdir %s", self.session.address, self.workdir)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.session is not None:
            self.session.stop()
        if self.workdir is not None and not self.keep_workdir:
            for _ in range(3):  # a process that just died may still have had a file open
                shutil.rmtree(self.workdir, ignore_errors=True)
                if not self.workdir.exists():
                    break
                time.sleep(0.5)

    def run(
        self,
        run_config: Mapping[str, Any],
        out_dir: str | Path,
        *,
        num_clients: int,
        timeout_s: float = 3600.0,
        app_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        """One run (see :func:`run_flower` for the arguments); returns ``summary.json``."""
        if self.session is None:
            raise FlowerLaunchError("FlowerSimulation.run needs an open `with` block.")
        out = Path(out_dir).expanduser().resolve()
        overrides = {**dict(run_config), "num-clients": int(num_clients), "out-dir": str(out)}
        parse_run_config(overrides)  # fail fast, before anything is submitted
        check_unlocked(out)  # another run writes there: refused now, not by the ServerApp
        federation = {"num-supernodes": int(num_clients), "client-resources-num-cpus": 1}
        return self.session.run(
            overrides,
            out,
            timeout_s=timeout_s,
            federation_config=federation,
            app_dir=None if app_dir is None else Path(app_dir).resolve(),
        )


def run_flower(
    run_config: Mapping[str, Any],
    out_dir: str | Path,
    *,
    num_clients: int,
    timeout_s: float = 3600.0,
    app_dir: str | Path | None = None,
    keep_workdir: bool = False,
) -> dict[str, Any]:
    """Run the fedzoo Flower app in a private local simulation; return ``summary.json``.

    Args:
        run_config: run-config overrides (kebab-case RunConfig options and federation
            keys, see :mod:`fedzoo_server.settings`); validated here before anything starts.
        out_dir: where the ServerApp writes history.csv, summary.json (made absolute;
            overrides ``out-dir``) and where ``flower-run.log`` is saved.
        num_clients: N: the ``num-clients`` run-config key and the number of virtual
            SuperNodes.
        timeout_s: limit for the whole run, SuperLink start included.
        app_dir: the Flower app directory (default: this repository, staged).
        keep_workdir: keep the temporary directory (SuperLink log, FLWR_HOME) for
            debugging; its path is logged.

    Returns:
        The content of ``summary.json`` (``engine: "flower"``).

    Raises:
        ConfigError: an invalid run-config (before any process starts).
        FlowerLaunchError: the run failed (its status and log are in the message) or
            timed out.
    """
    t0 = time.monotonic()
    parse_run_config({**dict(run_config), "num-clients": int(num_clients)})  # fail fast
    with FlowerSimulation(keep_workdir=keep_workdir, start_timeout_s=min(60.0, timeout_s)) as sim:
        left = max(timeout_s - (time.monotonic() - t0), 1.0)
        return sim.run(run_config, out_dir, num_clients=num_clients, timeout_s=left, app_dir=app_dir)
