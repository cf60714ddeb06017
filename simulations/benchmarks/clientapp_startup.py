"""Benchmark: start-up cost of the Flower ClientApp process (paid per message deployed).

Times ``python -c "import fedzoo_client.app"`` in fresh interpreters (median of --repeats) and
reports which heavy modules the import loads (torch must not be among them).

    python simulations/benchmarks/clientapp_startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

PROBE = ("import sys, time; t = time.perf_counter(); import fedzoo_client.app; "
         "print(time.perf_counter() - t); "
         "print(' '.join(m for m in ('torch', 'grpc', 'flwr', 'scipy', 'ray') if m in sys.modules))")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    wall, inner, mods = [], [], ""
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
        wall.append(time.perf_counter() - t0)
        lines = out.stdout.splitlines()
        inner.append(float(lines[0]))
        mods = lines[1] if len(lines) > 1 else ""
    print(f"import fedzoo_client.app: {statistics.median(inner):.2f} s (median of {args.repeats}); "
          f"whole interpreter: {statistics.median(wall):.2f} s; loads: {mods or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
