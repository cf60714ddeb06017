"""Benchmark: what a forged checkpoint costs before it is refused (RELIABILITY.md).

    python simulations/benchmarks/forged_state.py --out runs/bench-forged [--baseline]

Files (in ``--out``), each the ``checkpoint.npz`` of a copy of a real 2-round fzoos run
(d = 4, 3 clients):

* ``header-bomb``: 311 bytes or so, one member whose ``.npy`` header declares (2**34,) float64
  (128 GiB) and holds nothing;
* ``zip-bomb``: the real checkpoint with ``client0/history-y`` replaced by 2**27 zeros
  (1 GiB declared honestly, about 1 MB compressed);
* ``zip-bomb-lying``: the same, its central directory claiming 1 KiB decompressed.

and ``intact``, the real checkpoint itself (what a load costs, lazy imports included).
Each is loaded by ``load_checkpoint`` in a child process: wall seconds until it returns
or raises, the child's peak RSS (``ru_maxrss``), and the outcome (the error's first 120
characters). ``--baseline`` also loads each file as the loader before bounded reads did
(``np.load`` and every member read), for comparison (it may take half a minute and a GiB).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

import numpy as np  # noqa: E402

CHILD = r"""
import resource, sys, time
sys.path[:0] = {paths!r}
mode, path = sys.argv[1], sys.argv[2]
import numpy as np
from fedzoo.checkpoint import load_checkpoint
t0 = time.perf_counter()
try:
    if mode == "bounded":
        load_checkpoint(path)
        outcome = "loaded"
    else:
        with np.load(path + "/checkpoint.npz", allow_pickle=False) as d:
            {{k: d[k] for k in d.files}}
        outcome = "loaded (np.load)"
except BaseException as err:
    outcome = f"{{type(err).__name__}}: {{err}}"[:120]
wall = time.perf_counter() - t0
print(repr((wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, outcome)))
"""


def npy_header(shape: tuple[int, ...]) -> bytes:
    head = repr({"descr": "<f8", "fortran_order": False, "shape": shape}).encode()
    head += b" " * (63 - (len(head) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head


def make_files(out: Path) -> dict[str, Path]:
    from fedzoo import RunConfig, make_problem, run_federation
    from fedzoo.checkpoint import CHECKPOINT_NAME

    base = out / "run"
    run_federation(make_problem("quadratic", dim=4, clients=3, heterogeneity=0.5, seed=0),
                   RunConfig.from_mapping({"method": "fzoos", "rounds": 2, "local-steps": 2,
                                           "rff-features": 64}), checkpoint_dir=base, workers=1)
    with np.load(base / CHECKPOINT_NAME) as z:
        good = {k: z[k] for k in z.files}
    files = {"intact": base}
    for name in ("header-bomb", "zip-bomb", "zip-bomb-lying"):
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "run-id").write_bytes((base / "run-id").read_bytes())
        files[name] = d
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("server/x.npy", npy_header((1 << 34,)))
    (files["header-bomb"] / CHECKPOINT_NAME).write_bytes(buf.getvalue())
    n = 1 << 27
    for lie in (False, True):
        buf = io.BytesIO()
        name = "client0/history-y.npy"
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for k, v in good.items():
                if k + ".npy" != name:
                    member = io.BytesIO()
                    np.lib.format.write_array(member, v)
                    zf.writestr(k + ".npy", member.getvalue())
            with zf.open(name, "w") as fh:
                fh.write(npy_header((n,)))
                for _ in range(n * 8 >> 22):
                    fh.write(bytes(1 << 22))
        data = bytearray(buf.getvalue())
        if lie:
            at = data.find(b"PK\x01\x02")
            while data[at + 46: at + 46 + len(name)] != name.encode():
                at = data.find(b"PK\x01\x02", at + 4)
            struct.pack_into("<I", data, at + 24, 1024)
        (files["zip-bomb-lying" if lie else "zip-bomb"] / CHECKPOINT_NAME).write_bytes(bytes(data))
    return files


def measure(mode: str, directory: Path) -> dict:
    code = CHILD.format(paths=[str(ROOT), str(ROOT / "proto")])
    proc = subprocess.run([sys.executable, "-c", code, mode, str(directory)], capture_output=True,
                          text=True, timeout=600)
    wall, rss_kib, outcome = eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307 - our own repr
    return {"wall_s": round(wall, 3), "peak_rss_mib": round(rss_kib / 1024, 1), "outcome": outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--baseline", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files = make_files(args.out)
    result = {}
    for name, directory in files.items():
        size = (directory / "checkpoint.npz").stat().st_size
        row = {"file_bytes": size, "bounded": measure("bounded", directory)}
        if args.baseline:
            row["np.load"] = measure("npload", directory)
        result[name] = row
        print(name, json.dumps(row), flush=True)
    result["_"] = {"total_s": round(time.perf_counter() - t0, 1),
                   "self_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    (args.out / "forged_state.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
