"""``fedzoo oracle serve``: serve one client's black box over gRPC.

Two sources of objectives:

* ``--problem {quadratic,ackley,levy}`` with ``--dim --clients --heterogeneity --seed``
  and ``--client-id i``: client i's objective of the synthetic federated problem (the
  same one :func:`fedzoo.objectives.problems.make_problem` builds in process);
* ``--callable module:function --dim D``: any Python callable ``f(X) -> y`` (X: n x d in
  the unit box, y: n values), imported with :mod:`importlib` (never evaluated as code).
  The current directory is put on ``sys.path`` first, as ``python -m`` does;
* ``--problem attack`` with ``--clients N --portion P --epsilon E --image I --client-id i``
  (and ``--dataset --data-dir --model-seed --models-dir --targeted``): client i's CNN
  margin on test image I (:mod:`fedzoo_attack.federation`; torch is imported only here).

The server runs until SIGTERM / SIGINT; it logs "oracle listening on HOST:PORT" and, with
``--port-file``, writes the bound port there (useful with ``--port 0``).

Any ``--host`` but a loopback address needs caller authentication: a shared token
(``--token-file FILE`` or the environment variable ``FEDZOO_ORACLE_TOKEN``; never a
command-line value, which other users can read in the process list) or mutual TLS
(``--tls-cert --tls-key --tls-client-ca``); without either the server refuses to start
(exit 2). See ``proto/README.md`` for the threat model.

Wiring: the ``fedzoo`` CLI calls :func:`add_arguments` on its ``oracle`` sub-parser and
:func:`main` with the parsed namespace. Stand-alone: ``python -m fedzoo_oracle.cli serve ...``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from fedzoo.errors import ConfigError, FedZooError
from fedzoo.objectives.base import CallableObjective, Objective
from fedzoo.objectives.loading import load_callable as _load_callable
from fedzoo.objectives.problems import PROBLEMS, make_problem

logger = logging.getLogger(__name__)

_PROBLEM_ONLY = ("clients", "heterogeneity", "seed", "client_id")
_ATTACK_ONLY = ("portion", "epsilon", "image")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``oracle`` sub-commands (``serve``) to ``parser``."""
    sub = parser.add_subparsers(dest="oracle_command", metavar="COMMAND", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve one client's black box over gRPC",
        description="Serve one client's black-box objective over gRPC until SIGTERM/SIGINT.",
        allow_abbrev=False,  # "--token SECRET" must not pass for "--token-file SECRET"
    )
    add_serve_arguments(serve)


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


class _RefuseTokenValue(argparse.Action):
    """``--token VALUE``: refused, a secret on the command line is visible to every user
    of the machine (``ps``) and lands in shell histories."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.error(
            "--token is not accepted: a token on the command line is visible to every user "
            "of the machine; put it in a file (chmod 600) and give --token-file FILE, or set "
            "the FEDZOO_ORACLE_TOKEN environment variable."
        )


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``oracle serve`` to ``parser``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--problem", choices=[*sorted(PROBLEMS), "attack"], help="synthetic problem, or attack"
    )
    source.add_argument(
        "--callable",
        metavar="MODULE:FUNCTION",
        help="a Python callable f(X) -> y on the unit box (needs --dim)",
    )
    parser.add_argument("--dim", type=_positive_int, help="dimension d")
    parser.add_argument("--clients", type=_positive_int, help="number of clients N (--problem)")
    parser.add_argument("--heterogeneity", type=float, help="heterogeneity C >= 0 (--problem)")
    parser.add_argument("--seed", type=int, help="problem seed (--problem)")
    parser.add_argument(
        "--client-id",
        type=_non_negative_int,
        help="which client's objective to serve (--problem; default 0)",
    )
    attack = parser.add_argument_group("--problem attack")
    attack.add_argument("--dataset", default="mnist5k", help="mnist5k, digits, mnist or cifar10")
    attack.add_argument("--data-dir", default="", help="directory of mnist / cifar10 files")
    attack.add_argument("--portion", type=float, help="class portion P in (0, 1]")
    attack.add_argument("--epsilon", type=float, help="L-inf radius > 0")
    attack.add_argument("--image", type=_non_negative_int, help="test image index")
    attack.add_argument("--model-seed", type=_non_negative_int, default=0)
    attack.add_argument("--models-dir", default="", help="directory of the weights file")
    attack.add_argument("--targeted", action="store_true")
    parser.add_argument("--budget", type=_non_negative_int, help="query budget (default: none)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=_non_negative_int, default=0, help="TCP port; 0 picks a free one (default)"
    )
    parser.add_argument("--port-file", help="write the bound port to this file")
    parser.add_argument("--tls-cert", help="PEM certificate chain (with --tls-key: serve TLS)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca",
        help="PEM CA certificates; callers must present a certificate they sign (mutual TLS)",
    )
    parser.add_argument(
        "--token-file",
        help="file holding the shared token callers must send as 'authorization: Bearer "
        "<token>' (default: the FEDZOO_ORACLE_TOKEN environment variable, if set)",
    )
    parser.add_argument("--token", action=_RefuseTokenValue, help=argparse.SUPPRESS)
    parser.add_argument(
        "--replay-bytes",
        type=_positive_int,
        default=16 * 1024 * 1024,
        help="bytes of outcomes kept for request_id retries (default 16 MiB)",
    )
    parser.add_argument(
        "--max-concurrent-rpcs",
        type=_positive_int,
        default=64,
        help="calls in progress beyond which new ones are refused (default 64)",
    )
    parser.add_argument(
        "--max-batch",
        type=_positive_int,
        default=10000,
        help="largest batch per call (default 10000)",
    )
    parser.add_argument(
        "--max-workers", type=_positive_int, default=4, help="RPC threads (default 4)"
    )


def load_callable(spec: str) -> Callable[..., Any]:
    """Import ``--callable module:function`` (``function`` may be dotted, ``mod:Cls.method``).

    The current directory is importable, as with ``python -m``.

    Raises:
        ConfigError: malformed spec, module not importable, attribute missing or not
            callable.
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    return _load_callable(spec, what="--callable")


def build_objective(args: argparse.Namespace) -> Objective:
    """The objective ``oracle serve`` should serve, from parsed arguments."""
    if args.callable is not None:
        given = [f"--{k.replace('_', '-')}" for k in _PROBLEM_ONLY if getattr(args, k) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} apply to --problem only, not --callable.")
        if args.dim is None:
            raise ConfigError("--callable needs --dim (the dimension of its unit box).")
        return CallableObjective(
            load_callable(args.callable), args.dim, budget=args.budget, name=args.callable
        )

    if args.problem == "attack":
        return _attack_objective(args)
    given = [f"--{k}" for k in _ATTACK_ONLY if getattr(args, k, None) is not None]
    if given or getattr(args, "targeted", False):
        raise ConfigError(f"{', '.join(given) or '--targeted'} apply to --problem attack only.")
    kwargs = {
        key: getattr(args, key)
        for key in ("dim", "clients", "heterogeneity", "seed")
        if getattr(args, key) is not None
    }
    problem = make_problem(args.problem, **kwargs)
    client_id = 0 if args.client_id is None else args.client_id
    if client_id >= problem.num_clients:
        raise ConfigError(
            f"--client-id must be in [0, {problem.num_clients - 1}] for "
            f"{problem.num_clients} clients, got {client_id}."
        )
    objective = problem.objectives[client_id]
    objective.budget = args.budget
    return objective


def _attack_objective(args: argparse.Namespace) -> Objective:
    from fedzoo_attack.federation import AttackSpec, client_objective

    missing = [f"--{k}" for k in ("clients", "portion", "epsilon", "image")
               if getattr(args, k) is None]
    if missing:
        raise ConfigError(f"--problem attack needs {', '.join(missing)}.")
    spec = AttackSpec(args.dataset, args.clients, args.portion, args.model_seed, args.epsilon,
                      bool(args.targeted), args.image, args.data_dir, args.models_dir)
    objective = client_objective(spec, 0 if args.client_id is None else args.client_id)
    objective.budget = args.budget
    return objective


def check_port_file(path: str) -> None:
    """``--port-file`` checked before the objective is built and the port bound: not a
    directory, in a directory that exists and can be written (a probe file is created
    there and removed).

    Raises:
        ConfigError: naming the path, what is wrong and what is expected.
    """
    import tempfile
    from pathlib import Path

    from fedzoo.errors import os_error_text, short_path

    target = Path(path).expanduser()
    shown = repr(short_path(target))
    expected = "expected a file path in an existing, writable directory"
    try:
        is_dir = target.is_dir()
    except OSError as err:  # a name too long, ...
        raise ConfigError(f"--port-file {shown} cannot be used: "
                          f"{os_error_text(err, with_path=False).rstrip('.')}; {expected}.") from err
    if str(path) == "" or is_dir:
        raise ConfigError(f"--port-file {shown} is {'empty' if str(path) == '' else 'a directory'}; "
                          f"{expected}.")
    parent = target.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", dir=parent)
    except OSError as err:
        reason = ("its directory does not exist" if not parent.exists()
                  else os_error_text(err, with_path=False).rstrip("."))
        raise ConfigError(f"--port-file {shown} cannot be written: {reason}; {expected}.") from err
    os.close(fd)
    os.unlink(probe)


def main(args: argparse.Namespace) -> int:
    """Run an ``oracle`` sub-command; return the exit status."""
    if getattr(args, "oracle_command", "serve") != "serve":
        raise ConfigError(f"Unknown oracle command {args.oracle_command!r}; expected 'serve'.")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server_logger = logging.getLogger("fedzoo_oracle.server")
    if server_logger.getEffectiveLevel() > logging.INFO:
        server_logger.setLevel(logging.INFO)  # the bound port must be reported

    from fedzoo_oracle.server import load_token, run_forever  # imports grpc

    try:
        if args.port_file is not None:
            check_port_file(args.port_file)
        token = load_token(getattr(args, "token_file", None))
        objective = build_objective(args)
        run_forever(
            objective,
            host=args.host,
            port=args.port,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=getattr(args, "tls_client_ca", None),
            token=token,
            max_batch=args.max_batch,
            max_workers=args.max_workers,
            replay_bytes=getattr(args, "replay_bytes", 16 * 1024 * 1024),
            max_concurrent_rpcs=getattr(args, "max_concurrent_rpcs", 64),
            port_file=args.port_file,
        )
    except FedZooError as err:
        logger.error("%s", err)
        return 2
    return 0


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fedzoo_oracle.cli",
        description="Black-box oracle over gRPC (fedzoo.oracle.v1).",
    )
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_main())
