"""docs/tensorboard.png: what `fedzoo compare --tensorboard DIR` shows in TensorBoard.

1. runs a short comparison (fzoos and fedzo, quadratic d=50, N=5, 15 rounds) with
   ``--tensorboard <tmp>/tb``;
2. serves it with ``tensorboard --logdir`` on 127.0.0.1 at a free port (its own process
   group);
3. takes a screenshot of the scalars page with headless Chromium (Debian's ``chromium``:
   ``apt-get install -y chromium``), no network, no GPU, a throw-away profile;
4. stops TensorBoard and Chromium by PID (their process groups), always, and saves the
   picture to ``--png`` (default docs/tensorboard.png).

    python simulations/tensorboard_screenshot.py [--png docs/tensorboard.png] [--chromium PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen | None) -> None:
    """Stop a process started in its own session: its group, by PID, TERM then KILL."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for(url: str, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tensorboard exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--png", default=str(ROOT / "docs" / "tensorboard.png"))
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--wait-s", type=float, default=20.0, help="page render time (virtual budget)")
    args = ap.parse_args()
    if not args.chromium:
        print("needs Chromium (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="fedzoo-tb-shot-"))
    tb_dir, out_dir = work / "tb", work / "runs"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "fedzoo_cli", "compare", "--methods", "fzoos,fedzo",
                    "--problem", "quadratic", "--dim", "50", "--clients", "5", "--rounds",
                    str(args.rounds), "--local-steps", "5", "--rff-features", "1000",
                    "--out", str(out_dir), "--tensorboard", str(tb_dir)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    port = free_port()
    board = shot = None
    try:
        board = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(tb_dir), "--host", "127.0.0.1",
             "--port", str(port), "--reload_interval", "0"],
            stdout=subprocess.DEVNULL, stderr=open(work / "tensorboard.log", "w"), start_new_session=True,
            env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"})
        url = f"http://127.0.0.1:{port}/"
        wait_for(url + "data/logdir", 90, board)
        png = Path(args.png).resolve()
        png.parent.mkdir(parents=True, exist_ok=True)
        shot = subprocess.Popen(
            [args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={work / 'chromium-profile'}", "--window-size=1400,1000",
             f"--virtual-time-budget={int(args.wait_s * 1000)}", f"--screenshot={png}",
             url + "?forceSVG=true&tagFilter=value%7Cqueries%2Ftotal%7Ctime#timeseries"],
            stdout=subprocess.DEVNULL, stderr=open(work / "chromium.log", "w"), start_new_session=True)
        shot.wait(timeout=180)
        if not png.is_file():
            raise RuntimeError(f"Chromium wrote no screenshot (log: {work / 'chromium.log'})")
        print(f"wrote {png}")
    finally:
        stop(shot)
        stop(board)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
