"""The deployment guide works from the docs alone: its commands, run in order.

``simulations/deploy/README.md`` marks the blocks a person runs with ``<!-- test -->``
(once) and ``<!-- test: each-node -->`` (once per device). This test runs them in one
bash shell on 127.0.0.1 (both "devices" on one host, ``PART=0`` and ``PART=1`` with their
own ``NODE_PORT``), with ``FZ`` a temporary directory, free ports, ``ROUNDS=1``, a private
``FLWR_HOME`` and the fedzoo app staged from this checkout: TLS certificates, node keys,
SuperLink with node authentication, registration, a user objective module on
``PYTHONPATH``, two SuperNodes, ``flwr run`` of ``problem='custom'`` with ``x0`` and
``weights``, and the guide's own stop block. Every process carries a marker in its
environment; the test checks that the guide stopped them all (and stops leftovers by PID).

A second test starts the same federation with one SuperNode that cannot import the user
module: the run must fail within seconds (not node-wait-timeout) with that error.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from fedzoo_launch.local import REPO_ROOT, free_port, stage_app
from fedzoo_launch.processes import processes_with_env

pytestmark = pytest.mark.slow

GUIDE = REPO_ROOT / "simulations" / "deploy" / "README.md"
BLOCK = re.compile(r"<!-- test(?:: (each-node))? -->\s*```bash\n(.*?)```", re.S)
MARKER = "FEDZOO_GUIDE_TEST"


def guide_blocks() -> list[tuple[bool, str]]:
    """(per node, code) of the guide's marked bash blocks, in order."""
    return [(bool(each), code) for each, code in BLOCK.findall(GUIDE.read_text())]


def script_of(blocks: list[tuple[bool, str]], node_ports: list[int],
              replace: dict[str, str] | None = None) -> str:
    parts = ["set -eu -o pipefail"]
    for each, code in blocks:
        for old, new in (replace or {}).items():
            code = code.replace(old, new)
        if "kill $(pgrep" in code:  # the stop block must run even after a failure
            parts.append("set +e")
        if each:
            for part, port in enumerate(node_ports):
                parts.append(f"export PART={part} NODE_PORT={port}\n{code}")
        else:
            parts.append(code)
    return "\n".join(parts) + "\n"


def environment(tmp_path: Path, token: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FZ=str(tmp_path / "fz"),
        APP=str(stage_app(tmp_path / "app")),
        COORD="127.0.0.1",
        LINK_PORT=str(free_port()),
        ROUNDS="1",
        FLWR_HOME=str(tmp_path / "flwr-home"),
        PATH=f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        OPENBLAS_NUM_THREADS="1",
        **{MARKER: token},
    )
    env.pop("PYTHONPATH", None)
    env.pop("PART", None)
    return env


def run_script(script: str, env: dict[str, str], token: str, timeout_s: float) -> tuple[int, str, list[str]]:
    """Run the script; return (exit status, output, marked processes left after it).
    Whatever it left running is stopped by PID afterwards."""
    proc = subprocess.Popen(["bash", "-c", script], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate()
        code = -1
    deadline = time.monotonic() + 15  # SIGTERM'd processes take a few seconds to exit
    while processes_with_env(MARKER, token) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [f"{pid}: {cmdline(pid)}" for pid in processes_with_env(MARKER, token)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_with_env(MARKER, token):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while processes_with_env(MARKER, token) and time.monotonic() < deadline:
            time.sleep(0.2)
    return code, out.decode(errors="replace"), left


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


def logs(fz: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted(fz.glob("*.log")))


def test_the_guide_has_the_blocks_a_person_runs_in_order():
    blocks = guide_blocks()
    text = "\n".join(code for _, code in blocks)
    assert [each for each, _ in blocks].count(True) == 2  # keys, SuperNodes
    for needle in ("openssl", "ssh-keygen", "flower-superlink", "flwr supernode register",
                   "flower-supernode", "mypkg", "flwr run", "x0=", "weights=", "kill"):
        assert needle in text, needle
    # the connection is defined before it is used, the keys registered are those written
    assert text.index("[superlink.edge]") < text.index("register")
    written = set(re.findall(r'-f "\$FZ/keys/(node\$PART\.key)"', text))
    assert written == {"node$PART.key"}
    for registered in re.findall(r'register "\$FZ/keys/(node\d)\.key\.pub"', text):
        assert registered in ("node0", "node1")


def test_the_guides_commands_run_a_custom_objective_on_two_supernodes(tmp_path):
    token = uuid.uuid4().hex
    env = environment(tmp_path, token)
    ports = [free_port(), free_port()]
    start = time.monotonic()
    code, out, left = run_script(script_of(guide_blocks(), ports), env, token, timeout_s=240)
    fz = Path(env["FZ"])
    assert code == 0, f"{out[-6000:]}\n{logs(fz)}"
    summary = json.loads((fz / "run1" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["problem"]["name"] == "custom"
    rows = list(csv.DictReader((fz / "run1" / "history.csv").open()))
    assert [int(r["round"]) for r in rows] == [0, 1]
    # x0 = 0.2 everywhere: the clients report measure(x0) = 4 x (0.2 - 0.7)^2 = 1
    assert float(rows[0]["reported_value"]) == pytest.approx(1.0)
    assert float(rows[-1]["value"]) < 1.0
    assert left == [], f"the guide's stop block left processes {left}"
    assert not list(fz.glob("*.pid"))
    print(f"guide ran in {time.monotonic() - start:.0f} s")


def test_a_supernode_without_the_user_module_fails_the_run_within_seconds(tmp_path):
    token = uuid.uuid4().hex
    env = environment(tmp_path, token)
    ports = [free_port(), free_port()]
    blocks = guide_blocks()
    # partition 1's SuperNode starts without the user code on its PYTHONPATH
    broken = [(each, code.replace(
        'PYTHONPATH="$FZ/code"', 'PYTHONPATH="$FZ/code$(test "$PART" = 1 && echo -none || true)"'))
              if "flower-supernode" in code else (each, code) for each, code in blocks]
    script = script_of(broken, ports)
    script = script.replace("python3 -c \"import json", "true || python3 -c \"import json", 1)
    start = time.monotonic()
    code, out, left = run_script(script, env, token, timeout_s=240)
    elapsed = time.monotonic() - start
    fz = Path(env["FZ"])
    assert code == 0, f"{out[-6000:]}\n{logs(fz)}"  # flwr run --stream exits 0 regardless
    assert "No module named 'mypkg'" in out, f"{out[-6000:]}\n{logs(fz)}"
    assert "partition" in out and "cannot load its objective" in out
    assert not (fz / "run1" / "summary.json").exists()
    assert elapsed < 100, elapsed  # the run ended long before node-wait-timeout = 120 s
    assert left == []


def test_the_deploy_script_exits_non_zero_within_seconds_when_no_objective_can_load(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "run_deployment", REPO_ROOT / "simulations" / "deploy" / "run_deployment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    start = time.monotonic()
    # problem = custom with nodes that name no objective: every SuperNode reports it
    code = module.main(["--clients", "2", "--problem", "custom", "--rounds", "1", "--dim", "4",
                        "--method", "fedzo", "--out", str(tmp_path / "out"),
                        "--workdir", str(tmp_path / "work")])
    assert code == 1 and time.monotonic() - start < 100
    err = capsys.readouterr().err
    assert "cannot load its objective" in err and "Start one SuperNode per partition" not in err
