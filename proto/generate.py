"""Regenerate (or check) the committed Python code for ``proto/oracle.proto``.

Usage::

    python proto/generate.py                 # regenerate proto/fedzoo_proto/ in place
    python proto/generate.py --out DIR       # write the package into DIR instead
    python proto/generate.py --check         # exit 1 when the committed code is stale

The code is produced by ``python -m grpc_tools.protoc`` from the pinned
``grpcio-tools`` (see ``TOOLS_VERSION``): a different version writes different files, so
both modes refuse to run with another one unless ``--any-tools-version`` is given.

``oracle.proto`` is staged as ``fedzoo_proto/oracle.proto`` in a temporary include root
so that protoc writes package-relative imports (``from fedzoo_proto import oracle_pb2``)
and registers a descriptor file name that cannot clash with another ``oracle.proto``.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PROTO_FILE = PROTO_DIR / "oracle.proto"
PACKAGE = "fedzoo_proto"
DEFAULT_OUT = PROTO_DIR / PACKAGE
TOOLS_VERSION = "1.81.1"
GENERATED = ("oracle_pb2.py", "oracle_pb2_grpc.py", "oracle_pb2.pyi")
ALL_FILES = ("__init__.py", *GENERATED)

INIT_TEXT = '''"""Generated gRPC code for ``proto/oracle.proto`` (package ``fedzoo.oracle.v1``).

Do not edit: regenerate with ``python proto/generate.py`` (``--check`` tells whether the
committed files are current). Importing this package loads nothing; import
``fedzoo_proto.oracle_pb2`` (protobuf) and ``fedzoo_proto.oracle_pb2_grpc`` (grpc) as
needed.
"""

API_VERSION = "v1"
'''


def tools_version() -> str | None:
    """Installed grpcio-tools version, or None when it is not installed."""
    try:
        return metadata.version("grpcio-tools")
    except metadata.PackageNotFoundError:
        return None


def generate(out_dir: Path) -> list[Path]:
    """Write the ``fedzoo_proto`` package files into ``out_dir``; return their paths.

    Raises:
        RuntimeError: protoc failed (its output is in the message).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fedzoo-protoc-") as tmp:
        include = Path(tmp) / "include"
        staged = include / PACKAGE
        staged.mkdir(parents=True)
        shutil.copyfile(PROTO_FILE, staged / PROTO_FILE.name)
        gen_root = Path(tmp) / "gen"
        gen_root.mkdir()
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{include}",
            f"--python_out={gen_root}",
            f"--grpc_python_out={gen_root}",
            f"--pyi_out={gen_root}",
            f"{PACKAGE}/{PROTO_FILE.name}",
        ]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"protoc failed (exit {proc.returncode}) on {PROTO_FILE}:\n"
                f"{proc.stdout}{proc.stderr}"
            )
        written = []
        for name in GENERATED:
            target = out_dir / name
            shutil.copyfile(gen_root / PACKAGE / name, target)
            written.append(target)
    init = out_dir / "__init__.py"
    init.write_text(INIT_TEXT, encoding="utf-8")
    return [init, *written]


def stale_files(committed: Path, fresh: Path) -> list[str]:
    """Names of the package files that are missing from or differ in ``committed``."""
    return [
        name
        for name in ALL_FILES
        if not (committed / name).is_file()
        or not filecmp.cmp(committed / name, fresh / name, shallow=False)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"directory of the generated package (default: {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temporary directory and exit 1 when --out differs",
    )
    parser.add_argument(
        "--any-tools-version",
        action="store_true",
        help=f"run even when grpcio-tools is not {TOOLS_VERSION} (output will differ)",
    )
    args = parser.parse_args(argv)

    found = tools_version()
    if found is None:
        print(
            f"grpcio-tools is not installed; install grpcio-tools=={TOOLS_VERSION} "
            "(pip install -e '.[dev]').",
            file=sys.stderr,
        )
        return 2
    if found != TOOLS_VERSION and not args.any_tools_version:
        print(
            f"grpcio-tools {found} is installed but the committed code is generated with "
            f"grpcio-tools=={TOOLS_VERSION}; install that version (or pass "
            "--any-tools-version to generate anyway).",
            file=sys.stderr,
        )
        return 2

    if not args.check:
        for path in generate(args.out):
            print(f"wrote {path}")
        return 0

    with tempfile.TemporaryDirectory(prefix="fedzoo-proto-check-") as tmp:
        generate(Path(tmp))
        stale = stale_files(args.out, Path(tmp))
    if stale:
        print(
            f"The generated code in {args.out} is stale or missing ({', '.join(stale)}) "
            f"for {PROTO_FILE}. Run: python proto/generate.py   and commit the result.",
            file=sys.stderr,
        )
        return 1
    print(f"{args.out} is up to date with {PROTO_FILE.name}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
