"""Benchmark: fault scenarios of the "Reliability II" issue, counted (RELIABILITY.md).

    python simulations/benchmarks/faults.py --out runs/bench-faults [--only hostile,...]

Scenarios (``--only`` takes their names; all by default, a few minutes in all):

* ``hostile``: one client of N = 2, 3, 5 (in-process engine, fzoos, d = 4, 4 rounds)
  sends magnitudes 1e20 ... 1e308: in its RFF weights (largest entry), its values
  (``value``, ``value-start``), its query counts (``num-queries``, ``total-queries``),
  or its objective is m * sum (x - 0.3)^2 (an honest client with a huge objective; 1e300
  instead of 1e308, beyond which it is not finite on the box); every aggregation. Counted per
  target and magnitude: tries, settings refused at configuration (median / clip with
  two clients), runs stalled (an exception, a failed round, or a non-finite global
  point), rounds lost (failed rounds), hostile replies rejected.
* ``driver``: ``fedzoo run --engine flower`` killed with SIGKILL or SIGTERM once its
  first round is written: processes left 30 s later (found by a TMPDIR unique to the
  try, which every descendant inherits), seconds until none is left, the temporary
  directory removed; then ``--resume`` of the killed run: finished rounds lost.
* ``lock``: a ``--resume`` started while the first run (a real process) still writes
  the directory: refused (exit 2, naming the pid); after that run is SIGKILLed, the
  resume goes on from its last checkpoint.
* ``checkpoints`` / ``snapshots``: a checkpoint and a client snapshot truncated at 20
  offsets, with one bit flipped at 200 offsets, and tampered (an edited array, meta,
  round, client arrays, num_clients, no digest): loads that returned arrays other than
  the written ones (goal 0), clean refusals, other exceptions (goal 0); and the CLI's
  exit status on a damaged and a tampered checkpoint.
* ``flags``: ``fedzoo run`` with every option set to values no run can use (negative,
  zero, NaN, inf, beyond int64 or the size caps, out-of-box radii, median with two
  clients, ...), in one child process with a 4 GiB address-space limit: exit status 2
  with a message naming the flag, and no traceback, for every case.

The oracle flood is measured by ``simulations/benchmarks/oracle_flood.py`` (proto/README.md).
Writes ``results.json`` and ``faults.md`` (the tables) under --out. No scenario has a
timed assertion; times are reported only.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

MAGNITUDES = (1e20, 1e40, 1e100, 1e200, 1e308)
HOSTILE_RUN = {"method": "fzoos", "rounds": 4, "local-steps": 2, "rff-features": 100,
               "gp-history": 60, "rff-history": 80, "sync-points": 8, "sync-candidates": 30,
               "explore-candidates": 20, "explore-points": 2}


# --------------------------------------------------------------------------------------
# hostile magnitudes
# --------------------------------------------------------------------------------------
def _problem(n: int, scale: float | None = None):
    from fedzoo.objectives import CallableObjective, FederatedProblem, make_problem

    p = make_problem("quadratic", dim=4, clients=n, heterogeneity=0.5, seed=0)
    objectives = list(p.objectives)
    if scale is not None:
        objectives[0] = CallableObjective(lambda X: scale * np.sum((X - 0.3) ** 2, axis=1), 4)
    return FederatedProblem(objectives, p.weights, p.x0, name="hostile")


def _hostile_reply(target: str, m: float):
    """reply -> the hostile client's version of it (client 0)."""

    def change(kind: str, reply: dict) -> dict:
        reply = dict(reply)
        if target == "rff-weights" and "rff-weights" in reply:
            w = reply["rff-weights"]
            reply["rff-weights"] = w / max(float(np.max(np.abs(w))), 1e-300) * m
        elif target == "values":
            for key in ("value", "value-start"):
                if key in reply:
                    reply[key] = m
        elif target == "counts":
            reply["num-queries"] = reply["total-queries"] = int(m)
        return reply

    return change


@contextlib.contextmanager
def _tampered(change):
    from fedzoo.engine import ThreadTransport

    saved = ThreadTransport.FUNCTIONS
    patched = {}
    for kind, fn in saved.items():
        def wrapped(config, objective, state, message, client_id, _fn=fn, _kind=kind, **kw):
            state, reply = _fn(config, objective, state, message, client_id, **kw)
            return state, (change(_kind, reply) if client_id == 0 else reply)
        patched[kind] = wrapped
    ThreadTransport.FUNCTIONS = patched
    try:
        yield
    finally:
        ThreadTransport.FUNCTIONS = saved


def hostile() -> list[dict]:
    from fedzoo import RunConfig, run_federation
    from fedzoo.errors import ConfigError

    rows = []
    for target in ("rff-weights", "values", "counts", "objective"):
        for m in MAGNITUDES:
            if target == "objective" and m > 1e300:
                m = 1e300  # m * sum (x - 0.3)^2 is not finite on the box beyond ~1e308
            row = {"target": target, "magnitude": m, "tries": 0, "refused_at_config": 0,
                   "stalled": 0, "rounds_lost": 0, "rejected_replies": 0, "exceptions": []}
            for n in (2, 3, 5):
                for aggregation in ("mean", "median", "clip"):
                    row["tries"] += 1
                    cfg = RunConfig.from_mapping({**HOSTILE_RUN, "aggregation": aggregation})
                    problem = _problem(n, m if target == "objective" else None)
                    try:
                        cfg.check_limits(problem.dim, n)
                    except ConfigError:
                        row["refused_at_config"] += 1
                        continue
                    change = _hostile_reply(target, m)
                    tamper = _tampered(change) if target != "objective" else contextlib.nullcontext()
                    try:
                        with tamper, warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            res = run_federation(problem, cfg, workers=1)
                    except Exception as err:  # noqa: BLE001 - counted, it is the measurement
                        row["stalled"] += 1
                        row["exceptions"].append(f"{type(err).__name__}: {err}"[:200])
                        continue
                    failed = [r for r in res.history[1:] if r["status"] == "failed"]
                    row["rounds_lost"] += len(failed)
                    row["rejected_replies"] += sum(r["notes"].count("rejected=0") for r in res.history)
                    if failed or not np.all(np.isfinite(res.x)):
                        row["stalled"] += 1
            rows.append(row)
            print(f"hostile {target} {m:g}: {row}", file=sys.stderr, flush=True)
    return rows


# --------------------------------------------------------------------------------------
# the Flower driver killed; a resume while the old run writes
# --------------------------------------------------------------------------------------
def marked(tmp: Path) -> list[int]:
    """Live processes whose environment has TMPDIR=tmp (every descendant of the CLI)."""
    needle = f"TMPDIR={tmp}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _cli(args: list[str], tmp: Path, log: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "fedzoo_cli", *args], cwd=REPO_ROOT, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, **kw)


def _wait(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def driver_kill(sig: int, work: Path, *, resume: bool = True) -> dict:
    """``fedzoo run --engine flower --checkpoint`` killed with ``sig`` after its first round."""
    from fedzoo.checkpoint import load_checkpoint
    from fedzoo.results import read_history

    tmp = work / "tmp"
    tmp.mkdir(parents=True)
    out = work / "out"
    run = ["run", "--engine", "flower", "--method", "fedzo", "--dim", "4", "--clients", "2",
           "--local-steps", "1", "--checkpoint", "--out", str(out)]
    t0 = time.monotonic()
    proc = _cli([*run, "--rounds", "400"], tmp, work / "cli.log", start_new_session=True)
    started = _wait(lambda: (out / "history.csv").exists() and len(read_history(out / "history.csv")) > 1, 240)
    before = len(marked(tmp))
    history = read_history(out / "history.csv") if started else []
    proc.send_signal(sig)
    proc.wait(timeout=120)
    t_kill = time.monotonic()
    gone = _wait(lambda: not marked(tmp), 30)
    cleanup_s = time.monotonic() - t_kill
    left = marked(tmp)
    commands = []
    for pid in left:
        with contextlib.suppress(OSError):
            commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120].decode())
    for pid in left:  # never leave them behind, whatever was measured
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    result = {"signal": signal.Signals(sig).name, "started": started, "processes_before": before,
              "exit_status": proc.returncode, "processes_left": len(left), "left": commands,
              "all_gone": gone,
              "cleanup_s": round(cleanup_s, 1),
              "temp_dirs_left": sorted(p.name for p in tmp.iterdir()),
              "rounds_written_before_kill": history[-1]["round"] if history else 0}
    if resume and started:
        done = load_checkpoint(out).round
        total = done + 2
        res = _cli(["run", "--resume", str(out), "--rounds", str(total)], tmp, work / "resume.log")
        res.wait(timeout=600)
        rows = read_history(out / "history.csv")
        result.update({"checkpoint_round": done, "resume_exit": res.returncode,
                       "resumed_rows": len(rows) - 1,
                       "finished_rounds_lost": max(result["rounds_written_before_kill"] - done, 0)})
        for pid in marked(tmp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    result["wall_s"] = round(time.monotonic() - t0, 1)
    return result


def resume_while_writing(work: Path) -> dict:
    """A --resume while a real first run still writes the directory, then after a SIGKILL."""
    from fedzoo.checkpoint import CHECKPOINT_NAME, load_checkpoint

    tmp = work / "tmp"
    tmp.mkdir(parents=True)
    out = work / "out"
    first = _cli(["run", "--method", "fedzo", "--dim", "3", "--clients", "2", "--local-steps", "1",
                  "--rounds", "100000", "--checkpoint", "--out", str(out)], tmp, work / "first.log",
                 start_new_session=True)
    _wait(lambda: (out / CHECKPOINT_NAME).exists(), 120)
    second = subprocess.run([sys.executable, "-m", "fedzoo_cli", "run", "--resume", str(out),
                             "--rounds", "100000"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    first.kill()
    first.wait(timeout=60)
    done = load_checkpoint(out).round
    third = subprocess.run([sys.executable, "-m", "fedzoo_cli", "run", "--resume", str(out),
                            "--rounds", str(done + 1)], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=300)
    return {"refused_exit": second.returncode,
            "refused_message": second.stderr.strip().splitlines()[-1] if second.stderr else "",
            "names_pid": f"pid {first.pid}" in second.stderr,
            "traceback": "Traceback" in second.stderr + third.stderr,
            "checkpoint_round_at_kill": done, "resume_after_kill_exit": third.returncode,
            "rounds_after_resume": load_checkpoint(out).round}


# --------------------------------------------------------------------------------------
# damaged and tampered checkpoints and snapshots
# --------------------------------------------------------------------------------------
def _damaged(data: bytes) -> list[tuple[str, bytes]]:
    n = len(data)
    cases = [(f"truncated at {k}", data[:k]) for k in np.linspace(0, n - 1, 20).astype(int)]
    for offset in np.linspace(0, n - 1, 200).astype(int):
        flipped = bytearray(data)
        flipped[offset] ^= 1 << (int(offset) % 8)
        cases.append((f"bit flipped at {offset}", bytes(flipped)))
    return cases


def checkpoints(work: Path) -> dict:
    from fedzoo import RunConfig, make_problem, run_federation
    from fedzoo.checkpoint import (
        CHECKPOINT_NAME,
        DIGEST_KEY,
        CheckpointError,
        content_digest,
        load_checkpoint,
    )

    src = work / "ckpt"
    run_federation(make_problem("quadratic", dim=3, clients=3, heterogeneity=0.5, seed=0),
                   RunConfig.from_mapping({**HOSTILE_RUN, "rounds": 2}), checkpoint_dir=src, workers=1)
    data = (src / CHECKPOINT_NAME).read_bytes()
    good = load_checkpoint(src)
    with np.load(io.BytesIO(data)) as z:
        arrays = {k: z[k] for k in z.files}

    def forged(change, digest=True) -> bytes:
        a = {k: v for k, v in arrays.items() if k != DIGEST_KEY}
        a = change(a)
        if digest:
            a[DIGEST_KEY] = np.frombuffer(content_digest(a), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **a)
        return buf.getvalue()

    def header(a, **kw):
        h = {**json.loads(str(a["header"])), **kw}
        return {**a, "header": np.array(json.dumps(h))}

    h0 = json.loads(str(arrays["header"]))
    tampered = [
        ("edited array, digest kept", forged(lambda a: {**a, "server/x": a["server/x"] + 0.01,
                                                        DIGEST_KEY: arrays[DIGEST_KEY]}, digest=False)),
        ("edited meta", forged(lambda a: header(a, meta={**h0["meta"], "problem": "levy"}))),
        ("lowered round", forged(lambda a: header(a, round=1))),
        ("lowered round and rows", forged(lambda a: header(a, round=1, rows=h0["rows"][:2]))),
        ("missing client arrays", forged(lambda a: {k: v for k, v in a.items() if not k.startswith("client2/")})),
        ("wrong num_clients", forged(lambda a: header(a, num_clients=4))),
        ("no digest (format 1)", forged(lambda a: header(a, format=1), digest=False)),
    ]
    result = {"written_bytes": len(data), "cases": 0, "refused": 0, "accepted_same": 0,
              "accepted_different": 0, "other_exceptions": [], "tampered_accepted": []}
    probe = work / "probe"
    probe.mkdir()
    for name, blob in _damaged(data) + tampered:
        result["cases"] += 1
        (probe / CHECKPOINT_NAME).write_bytes(blob)
        try:
            ckpt = load_checkpoint(probe)
        except CheckpointError:
            result["refused"] += 1
            continue
        except Exception as err:  # noqa: BLE001 - counted
            result["other_exceptions"].append(f"{name}: {type(err).__name__}: {err}"[:200])
            continue
        same = ckpt.round == good.round and ckpt.meta == good.meta and all(
            np.array_equal(ckpt.server[k], good.server[k]) for k in good.server)
        result["accepted_same" if same else "accepted_different"] += 1
        if any(name == t for t, _ in tampered):
            result["tampered_accepted"].append(name)
    # the CLI on a damaged and a tampered checkpoint
    exits = {}
    for name, blob in (("damaged", data[: len(data) // 2]), ("tampered", tampered[2][1])):
        (probe / CHECKPOINT_NAME).write_bytes(blob)
        res = subprocess.run([sys.executable, "-m", "fedzoo_cli", "run", "--resume", str(probe)],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        exits[name] = {"exit": res.returncode, "traceback": "Traceback" in res.stderr,
                       "message": res.stderr.strip().splitlines()[-1][:160] if res.stderr else ""}
    result["cli"] = exits
    result["tampered_kinds"] = len(tampered)
    return result


def snapshots(work: Path) -> dict:
    from fedzoo.checkpoint import write_npz_atomic
    from fedzoo_client.persistence import (
        DIGEST_KEY,
        CorruptSnapshotError,
        content_digest,
        read_snapshot,
    )

    arrays = {"dim": np.array([3.0]), "history-x": np.random.default_rng(0).random((40, 3)),
              "history-y": np.random.default_rng(1).random(40), "total-queries": np.array([120])}
    path = work / "state-000002-1.npz"
    write_npz_atomic(path, {**arrays, DIGEST_KEY: np.frombuffer(content_digest(arrays), dtype=np.uint8)})
    data = path.read_bytes()
    edited = {**arrays, "history-y": arrays["history-y"] + 1}
    buf = io.BytesIO()
    np.savez(buf, **edited, **{DIGEST_KEY: np.frombuffer(content_digest(arrays), dtype=np.uint8)})
    nodigest = io.BytesIO()
    np.savez(nodigest, **arrays)
    result = {"written_bytes": len(data), "cases": 0, "refused": 0, "accepted_same": 0,
              "accepted_different": 0, "other_exceptions": []}
    for _name, blob in _damaged(data) + [("edited array", buf.getvalue()), ("no digest", nodigest.getvalue())]:
        result["cases"] += 1
        path.write_bytes(blob)
        try:
            got = read_snapshot(path)
        except CorruptSnapshotError:
            result["refused"] += 1
            continue
        except Exception:  # noqa: BLE001 - the zip layer's errors: StateStore skips the file
            result["refused"] += 1
            continue
        same = got.keys() == arrays.keys() and all(np.array_equal(got[k], arrays[k]) for k in arrays)
        result["accepted_same" if same else "accepted_different"] += 1
    return result


# --------------------------------------------------------------------------------------
# the flag sweep
# --------------------------------------------------------------------------------------
def flag_cases() -> list[tuple[str, list[str]]]:
    """(flag named in the message, argv after ``run``) for values no run can use."""
    import dataclasses

    from fedzoo.config import RANGES, RunConfig
    from fedzoo.methods import methods

    reader = {}
    for m in methods():
        for option in m.options:
            reader.setdefault(option, m.name)
    cases: list[tuple[str, list[str]]] = []
    for f in dataclasses.fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = f.metadata["kind"]
        method = reader.get(flag[2:], "fzoos")
        if kind == "choice":
            values = ["bogus"]
        elif kind == "shape":
            values = ["-1", "3x"]
        elif kind == "floor":
            values = ["nan", "inf", "abc", "1e400"]
        elif kind.endswith("int"):
            values = ["-7", str(2**63)] + (["0"] if kind == "positive-int" else [])
            high = RANGES.get(f.name, (None, None, ""))[1]
            if high is not None:
                values.append(str(int(high) + 1))
        else:
            values = ["-1", "nan", "inf", "1e308"] + (["0"] if kind in ("positive", "unit") else [])
            low, high, _ = RANGES.get(f.name, (None, None, ""))
            if high is not None:
                values.append(repr(float(high) * 2))
            if low is not None:
                values.append(repr(float(low) / 10))
            if kind == "unit":
                values.append("1.5")
        for value in values:
            if f.name == "method":
                cases.append((flag, [flag, value]))
            else:
                cases.append((flag, ["--method", method, flag, value]))
    cases += [
        ("--dim", ["--dim", "0"]), ("--dim", ["--dim", "-1"]), ("--dim", ["--dim", "100000000"]),
        ("--clients", ["--clients", "0"]), ("--clients", ["--clients", "100000000"]),
        ("--heterogeneity", ["--heterogeneity", "-1"]), ("--heterogeneity", ["--heterogeneity", "nan"]),
        ("--heterogeneity", ["--heterogeneity", "inf"]), ("--heterogeneity", ["--heterogeneity", "1e308"]),
        ("--problem-seed", ["--problem-seed", "-7"]), ("--problem-seed", ["--problem-seed", str(2**63)]),
        ("--workers", ["--workers", "0"]), ("--workers", ["--workers", "-1"]),
        ("--rff-features", ["--dim", "300", "--rff-features", "2000000"]),
        ("--init-points", ["--dim", "300", "--init-points", "1000000"]),
        ("--history-max", ["--dim", "20000", "--history-max", "5000"]),
        ("--popsize", ["--method", "fedcma", "--dim", "300", "--popsize", "1000000"]),
        ("--fd-estimator", ["--method", "fedzo", "--dim", "20000", "--fd-estimator", "coordinate"]),
        ("--aggregation", ["--clients", "2", "--aggregation", "median"]),
        ("--aggregation", ["--clients", "5", "--fraction", "0.2", "--aggregation", "clip"]),
        ("--min-replies", ["--clients", "3", "--min-replies", "9"]),
        ("--problem", ["--problem", "sphere"]),
        ("--engine", ["--engine", "ray"]),
    ]
    return cases


def _flags_child(cases_path: str) -> int:
    """Run every case through ``fedzoo_cli.main.main`` in this process (4 GiB limit)."""
    import resource

    from fedzoo_cli.main import main

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    logging.disable(logging.CRITICAL)
    cases = json.loads(Path(cases_path).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        for i, (flag, argv) in enumerate(cases):
            err = io.StringIO()
            signal.alarm(60)
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code = main(["run", *argv, "--out", f"{tmp}/run{i}"])
            except SystemExit as e:  # argparse: exit 2 with its message
                code = e.code if isinstance(e.code, int) else 1
            except BaseException as e:  # noqa: BLE001 - a traceback: what the sweep looks for
                code, err = "exception", io.StringIO(f"Traceback: {type(e).__name__}: {e}")
            signal.alarm(0)
            print(json.dumps({"flag": flag, "argv": argv, "exit": code,
                              "stderr": err.getvalue().strip()[-400:]}), flush=True)
    return 0


def flag_sweep(work: Path) -> dict:
    cases = flag_cases()
    path = work / "cases.json"
    path.write_text(json.dumps(cases))
    res = subprocess.run([sys.executable, __file__, "--flags-child", str(path)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=1800)
    got = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    bad = [g for g in got if g["exit"] != 2 or "Traceback" in g["stderr"]
           or g["flag"].lstrip("-") not in g["stderr"]]
    return {"cases": len(cases), "answered": len(got), "exit_2_naming_the_flag": len(got) - len(bad),
            "tracebacks": sum("Traceback" in g["stderr"] for g in got), "bad": bad,
            "child_exit": res.returncode, "child_stderr": res.stderr[-2000:] if res.returncode else ""}


# --------------------------------------------------------------------------------------
def _markdown(results: dict) -> str:
    lines = []
    if "hostile" in results:
        lines += ["| target | magnitude | tries | refused at config | stalled | rounds lost | hostile replies rejected |",
                  "|---|---|---|---|---|---|---|"]
        for r in results["hostile"]:
            lines.append(f"| {r['target']} | {r['magnitude']:g} | {r['tries']} | {r['refused_at_config']} | "
                         f"{r['stalled']} | {r['rounds_lost']} | {r['rejected_replies']} |")
        lines.append("")
    if "driver" in results:
        lines += ["| signal | processes before | exit | processes left | cleaned in (s) | temp dirs left | "
                  "finished rounds lost | resume exit |", "|---|---|---|---|---|---|---|---|"]
        for r in results["driver"]:
            lines.append(f"| {r['signal']} | {r['processes_before']} | {r['exit_status']} | "
                         f"{r['processes_left']} | {r['cleanup_s']} | {len(r['temp_dirs_left'])} | "
                         f"{r.get('finished_rounds_lost', '-')} | {r.get('resume_exit', '-')} |")
        lines.append("")
    for key in ("lock", "checkpoints", "snapshots", "flags"):
        if key in results:
            shown = {k: v for k, v in results[key].items() if k not in ("bad",)}
            lines.append(f"**{key}**: `{json.dumps(shown)}`\n")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench-faults")
    ap.add_argument("--only", default="hostile,driver,lock,checkpoints,snapshots,flags")
    ap.add_argument("--tries", type=int, default=2, help="kills per signal (driver)")
    ap.add_argument("--flags-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.flags_child:
        return _flags_child(args.flags_child)
    logging.basicConfig(level=logging.ERROR)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    results: dict = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        work = Path(tmp)
        if "hostile" in only:
            results["hostile"] = hostile()
        if "driver" in only:
            results["driver"] = [driver_kill(sig, work / f"{sig.name}{i}", resume=i == 0)
                                 for sig in (signal.SIGKILL, signal.SIGTERM) for i in range(args.tries)]
        if "lock" in only:
            results["lock"] = resume_while_writing(work / "lock")
        if "checkpoints" in only:
            (work / "c").mkdir()
            results["checkpoints"] = checkpoints(work / "c")
        if "snapshots" in only:
            (work / "s").mkdir()
            results["snapshots"] = snapshots(work / "s")
        if "flags" in only:
            (work / "f").mkdir()
            results["flags"] = flag_sweep(work / "f")
    results["wall_s"] = round(time.monotonic() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "faults.md").write_text(_markdown(results))
    print(_markdown(results))
    print(f"wrote {out / 'results.json'} and {out / 'faults.md'} ({results['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
