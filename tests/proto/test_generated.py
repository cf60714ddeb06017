"""The committed generated code matches proto/oracle.proto (``proto/generate.py --check``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATOR = REPO_ROOT / "proto" / "generate.py"


def test_generated_code_is_current() -> None:
    pytest.importorskip("grpc_tools")
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_fails_on_stale_code(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    run = [sys.executable, str(GENERATOR), "--out", str(tmp_path)]
    subprocess.run(run, capture_output=True, check=True, timeout=60)
    with open(tmp_path / "oracle_pb2.py", "a", encoding="utf-8") as fh:
        fh.write("# edited by hand\n")
    proc = subprocess.run(
        [*run, "--check"], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 1
    assert "oracle_pb2.py" in proc.stderr
    assert "python proto/generate.py" in proc.stderr


def test_generated_package_imports() -> None:
    from fedzoo_proto import API_VERSION, oracle_pb2

    assert API_VERSION == "v1"
    assert oracle_pb2.DESCRIPTOR.package == "fedzoo.oracle.v1"
    service = oracle_pb2.DESCRIPTOR.services_by_name["Oracle"]
    assert {m.name for m in service.methods} == {"Describe", "Evaluate"}
