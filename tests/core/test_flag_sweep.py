"""Every bad flag exits 2 with a clear message, never a traceback nor a MemoryError.

The sweep is ``simulations/benchmarks/faults.py``'s (``flag_cases``): every RunConfig
option set to values no run can use (negative, zero, NaN, inf, beyond int64 or its
range, a bogus choice), the problem flags (dim, clients, heterogeneity, problem-seed,
workers) and the size caps shared with the Flower run-config (rff-features x dim,
init-points x dim, history-max x dim, popsize x dim, the coordinate estimator's d x d),
median with two clients. It runs in one child process with a 4 GiB address-space limit,
so a cap that stopped working shows as a failed case, not as a swapping test machine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def faults():
    path = ROOT / "simulations" / "benchmarks" / "faults.py"
    spec = importlib.util.spec_from_file_location("faults_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_bad_flag_exits_2_naming_it(tmp_path):
    res = faults().flag_sweep(tmp_path)
    assert res["child_exit"] == 0, res["child_stderr"]
    assert res["answered"] == res["cases"] >= 150
    assert res["bad"] == [] and res["tracebacks"] == 0
    flags = {flag for flag, _ in faults().flag_cases()}
    for flag in ("--problem-seed", "--init-radius", "--dim", "--rff-features", "--workers",
                 "--heterogeneity", "--aggregation", "--rounds", "--popsize"):
        assert flag in flags


# --------------------------------------------------------------------------------------
# what the red team found (issue 24, item 4): each exits 2 with one line, no traceback
# --------------------------------------------------------------------------------------
import errno  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from fedzoo_cli.main import main  # noqa: E402

FAST = ["--method", "fedzo", "--dim", "4", "--clients", "2", "--local-steps", "1"]
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(ROOT), str(ROOT / "proto"), os.environ.get("PYTHONPATH", "")])}


def _one_line_exit_2(code, err, *words):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fedzoo: error: ") and "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert len(lines[0]) < 700  # a 5000-character path is shortened


def _config(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return str(path)


CASES = {
    "out-too-long": (lambda t: ["run", *FAST, "--out", str(t / ("a" * 5000))],
                     ["--out", "File name too long", "errno 36", "characters)"]),
    "out-under-a-file": (lambda t: ["run", *FAST, "--out", str(t / "file" / "sub")],
                         ["--out", "Not a directory"]),
    "config-binary": (lambda t: ["run", *FAST, "--out", str(t / "o"), "--config",
                                 _config(t, bytes(range(128, 256)))],
                      ["--config", "not a text file", "TOML"]),
    "config-out-5": (lambda t: ["run", *FAST, "--config", _config(t, "out = 5\n")],
                     ["out = 5", "expected a string", "--out"]),
    "config-tensorboard-3": (lambda t: ["run", *FAST, "--out", str(t / "o"), "--config",
                                        _config(t, "tensorboard = 3\n")],
                             ["tensorboard = 3", "--tensorboard"]),
    "config-switch-text": (lambda t: ["run", *FAST, "--out", str(t / "o"), "--config",
                                      _config(t, 'checkpoint = "yes"\n')],
                           ["--checkpoint", "true or false"]),
    "config-a-directory": (lambda t: ["run", *FAST, "--out", str(t / "o"), "--config", str(t)],
                           ["--config", "Is a directory"]),
    "seeds-unbounded": (lambda t: ["compare", "--seeds", "0-1000000", "--out", str(t / "o")],
                        ["--seeds", "at most 1000"]),
    "seeds-huge": (lambda t: ["compare", "--seeds", "0-99999999999999999999999", "--out",
                              str(t / "o")], ["--seeds", "at most 1000"]),
    "resume-workers-0": (lambda t: ["run", "--resume", str(t), "--workers", "0"],
                         ["--workers", ">= 1"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_red_teams_inputs_exit_2_with_one_line(case, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    argv, words = CASES[case]
    code = main(argv(tmp_path))
    _one_line_exit_2(code, capsys.readouterr().err, *words)
    assert not (tmp_path / "o").exists()  # refused before anything was written


@pytest.mark.parametrize(("argv", "words"), [
    (["--images", "1", "--budget", "100", "--out", "FILE"], ["--out", "is a file"]),
    (["--model-seed", "-1", "--out", "NEW"], ["--model-seed -1", ">= 0"]),
    (["--workers", "0", "--out", "NEW"], ["--workers 0", ">= 1"]),
])
def test_attack_flags_and_out_are_checked_before_any_work(argv, words, tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    import fedzoo_attack.data as data

    def no_work(*a, **k):
        raise AssertionError("the data were loaded before the flags were checked")

    monkeypatch.setattr(data, "load_dataset", no_work)
    (tmp_path / "f.txt").write_text("x")
    argv = [str(tmp_path / "f.txt") if a == "FILE" else str(tmp_path / "new") if a == "NEW" else a
            for a in argv]
    code = main(["attack", "--method", "fedzo", *argv])
    _one_line_exit_2(code, capsys.readouterr().err, *words)
    assert not (tmp_path / "new").exists()


def test_oracle_port_file_in_a_missing_directory_is_refused_before_binding(tmp_path):
    pytest.importorskip("grpc")
    done = subprocess.run([sys.executable, "-m", "fedzoo_cli", "oracle", "serve", "--problem",
                           "quadratic", "--dim", "4", "--port-file", str(tmp_path / "no" / "port")],
                          capture_output=True, text=True, timeout=120, env=ENV, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert "--port-file" in done.stderr and "directory does not exist" in done.stderr
    assert "listening" not in done.stderr and "Traceback" not in done.stderr


# --------------------------------------------------------------------------------------
# file-system faults during a run: a full disk, a read-only or vanished --out
# --------------------------------------------------------------------------------------
def _summary_status(out):
    return json.loads((out / "summary.json").read_text())["status"]


def _rounds_on_disk(out):
    from fedzoo.results import read_history

    return [r["round"] for r in read_history(out / "history.csv")]


def test_a_disk_that_fills_during_a_run_exits_2_naming_errno_28(tmp_path, capsys, monkeypatch):
    """ENOSPC from the 4th fsync on (history.csv fsync'd every round here: the start's
    file and directory, round 1, then round 2 fails)."""
    from fedzoo import results

    monkeypatch.setattr(results.HistoryFile, "FSYNC_INTERVAL_S", 0.0)
    calls = []
    real = os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "o"
    code = main(["run", *FAST, "--rounds", "6", "--workers", "1", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    _one_line_exit_2(code, err, "No space left on device", "errno 28", "ENOSPC",
                     "history.csv", "free space")
    assert _rounds_on_disk(out)[:3] == [0, 1, 2]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounts a tmpfs (root)")
def test_a_full_tmpfs_during_a_checkpointed_run_exits_2_and_keeps_the_rounds(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = disk / "run"
        done = subprocess.run([sys.executable, "-m", "fedzoo_cli", "run", "--method", "fzoos",
                               "--dim", "20", "--clients", "3", "--rounds", "40", "--checkpoint",
                               "--out", str(out)], capture_output=True, text=True, timeout=300,
                              env=ENV, cwd=ROOT)
        err = [line for line in done.stderr.splitlines() if not line.startswith("[fzoos]")]
        _one_line_exit_2(done.returncode, "\n".join(err), "No space left on device", "errno 28",
                         "the file system is full", "history.csv")
        assert _rounds_on_disk(out)[0] == 0  # what fitted is readable
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_read_only_out_during_a_run_exits_2_and_keeps_the_rounds(tmp_path, capsys, monkeypatch):
    """From round 3 on every write under --out fails with EROFS (as after a remount)."""
    from fedzoo import results

    out = tmp_path / "o"
    real_sync, real_atomic = results.HistoryFile.sync, results.write_atomic
    state = {"rows": 0}

    def read_only(path):
        raise results.ResultsWriteError.of(OSError(errno.EROFS, os.strerror(errno.EROFS)), path)

    def sync(self, rows):
        if len(rows) > 3:
            read_only(self.path)
        state["rows"] = len(rows)
        real_sync(self, rows)

    def atomic(path, data):
        if state["rows"] >= 3:
            read_only(path)
        real_atomic(path, data)

    monkeypatch.setattr(results.HistoryFile, "sync", sync)
    monkeypatch.setattr(results, "write_atomic", atomic)
    code = main(["run", *FAST, "--rounds", "6", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    _one_line_exit_2(code, err, "cannot write", "history.csv", "Read-only file system",
                     "errno 30", "summary.json could not be written")
    assert _rounds_on_disk(out) == [0, 1, 2]


def test_an_out_removed_during_a_run_exits_2_and_the_rounds_are_written_again(
        tmp_path, capsys, monkeypatch):
    import fedzoo_cli.main as cli
    from fedzoo_cli.progress import RoundProgress

    out = tmp_path / "o"

    def progress(label):
        def remove(row, total):
            if row["round"] == 2:
                shutil.rmtree(out)
        return RoundProgress(label, also=[remove])

    monkeypatch.setattr(cli, "_progress", progress)
    code = main(["run", *FAST, "--rounds", "6", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    _one_line_exit_2(code, err, "cannot write", "history.csv", "No such file or directory",
                     "removed while the command ran", "summary.json has status failed")
    # round 3 ended after the removal: the failed run wrote rows 0-3 again (with summary.json)
    assert _rounds_on_disk(out) == [0, 1, 2, 3] and _summary_status(out) == "failed"
