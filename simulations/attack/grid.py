"""The attack grid's driver (see grid.sh for the grid, the layout and the environment).

Every ``fedzoo attack`` run of a setting goes through ``fedzoo_cli.main.main`` in this one
process (torch, the data and the CLI are imported once: a separate process per run cost
6-8 s of start-up on the shared 2-core box, about 45 minutes over the 48 settings), with
its stdout and stderr in ``<run>.txt`` / ``<run>.log`` beside the run. A run whose
summary.json exists is skipped; a run that fails is logged (grid.log, failures.txt) and
the grid goes on; a setting with fewer eligible images than --images K gets
``ineligible-k<K>.txt`` and is skipped (for that K).

Usage: python simulations/attack/grid.py OUT_ROOT [extra fedzoo attack flags ...]
(environment as in grid.sh).
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # whitebox_reference

#: Gradient-type methods run alone (their own run directory) and only in FZOOS_CELLS:
#: the gradient FZooS costs ~4 s per round at d = 784 with --local-steps 10.
SLOW = ("fzoos-paper", "fzoos-lagged")
DEFAULT_FZOOS_CELLS = "mnist5k:0.7:0.3:* mnist5k:0.5:0.2:* mnist5k:0.5:0.1:* digits:*:*:*"


def env(name: str, default: str) -> str:
    """``${NAME-default}``: an empty value counts (METHODS= runs none)."""
    return os.environ.get(name, default)


def words(name: str, default: str) -> list[str]:
    return env(name, default).split()


class Grid:
    def __init__(self, out: Path, extra: list[str]) -> None:
        self.out = out
        self.extra = extra
        self.datasets = words("DATASETS", "mnist5k digits")
        self.portions = words("PORTIONS", "0.7 0.5 0.3 1.0")
        self.epsilons = words("EPSILONS", "0.3 0.2 0.1")
        self.targets = words("TARGETS", "untargeted targeted")
        self.images = int(env("IMAGES", "4") or 4)
        self.methods = words("METHODS", "fedzo fedprox scaffold1 scaffold2 fzoos-paper")
        self.lambdas = words("SQUARE_LAMBDAS", "1 5 10 27")
        self.extra_methods = words("EXTRA_METHODS", "fzoos fzoos-square")
        self.fzoos_cells = env("FZOOS_CELLS", DEFAULT_FZOOS_CELLS).split()
        self.first = [tuple(pe.split(":")) for pe in words("FIRST", "0.7:0.3 0.5:0.2 0.5:0.1")]
        self.whitebox = env("WHITEBOX", "1") == "1"
        self.plots = env("PLOTS", "0") == "1"
        self.common = ["--clients", "10", "--images", str(self.images), "--seed", "0",
                       "--budget", "20000", "--report-budgets", "2000,5000,10000,20000"]
        if not self.plots:
            self.common.append("--no-plot")
        self.datasets_cache: dict[Any, Any] = {}

    # ---------------------------------------------------------------- records
    def log(self, text: str) -> None:
        line = f"{time.strftime('%F %T')} {text}"
        print(line, flush=True)
        with open(self.out / "grid.log", "a") as fh:
            fh.write(line + "\n")

    def wall(self, setting: str, run: str, secs: float, status: object) -> None:
        with open(self.out / "wall.tsv", "a") as fh:
            fh.write(f"{setting}\t{run}\t{secs:.1f}\t{status}\n")

    def failed(self, setting: str, run: str, why: str) -> None:
        with open(self.out / "failures.txt", "a") as fh:
            fh.write(f"{setting} {run}: {why}\n")

    def ineligible(self, setting_dir: Path) -> Path:
        """Where a setting with fewer than K eligible images is recorded (per K)."""
        return setting_dir / f"ineligible-k{self.images}.txt"

    def fzoos_here(self, ds: str, p: str, eps: str, tgt: str) -> bool:
        if self.fzoos_cells == ["all"]:
            return True
        cell = f"{ds}:{p}:{eps}:{tgt}"
        return any(fnmatch.fnmatchcase(cell, pat) for pat in self.fzoos_cells)

    # ---------------------------------------------------------------- runs
    def run(self, setting_dir: Path, name: str, args: list[str]) -> str:
        """One `fedzoo attack` run: "done", "skipped" (summary.json exists), "failed" or
        "ineligible"."""
        from fedzoo_cli.main import main

        run_dir = setting_dir / name
        if (run_dir / "summary.json").exists():
            return "skipped"
        argv = ["attack", *self.common, *args, *self.extra, "--out", str(run_dir)]
        start = time.perf_counter()
        with open(setting_dir / f"{name}.txt", "w") as out, \
                open(setting_dir / f"{name}.log", "w") as err, \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            print("fedzoo " + " ".join(argv), file=sys.stderr, flush=True)
            try:
                rc: object = main(argv)
            except SystemExit as exc:
                # The CLI turns SIGTERM / SIGINT into SystemExit(128 + signal): the grid is
                # being stopped, so stop (a bad flag, exit 2, is only this run's failure).
                if not isinstance(exc.code, int) or exc.code >= 128:
                    raise
                rc = f"exit {exc.code}"
            except Exception as exc:  # noqa: BLE001 - one run's crash must not end the grid
                traceback.print_exc()
                rc = f"crash: {type(exc).__name__}: {exc}"
        secs = time.perf_counter() - start
        self.wall(setting_dir.name, name, secs, rc)
        log_text = (setting_dir / f"{name}.log").read_text()
        if rc != 0 and "images are eligible" in log_text:
            why = [ln for ln in log_text.splitlines() if "images are eligible" in ln][-1]
            self.ineligible(setting_dir).write_text(why + "\n")
            self.log(f"{setting_dir.name} {name}: too few eligible images ({why.strip()}); "
                     "setting skipped")
            return "ineligible"
        if rc != 0:
            self.log(f"{setting_dir.name} {name}: FAILED ({rc}, {secs:.0f} s; see "
                     f"{setting_dir / name}.log)")
            self.failed(setting_dir.name, name, str(rc))
            return "failed"
        self.log(f"{setting_dir.name} {name}: done in {secs:.0f} s")
        return "done"

    def whitebox_ref(self, setting_dir: Path) -> None:
        target = setting_dir / "whitebox.json"
        if not self.whitebox or target.exists():
            return
        runs = sorted(p.parent for p in setting_dir.glob("*/summary.json"))
        if not runs:
            return
        from whitebox_reference import reference

        start = time.perf_counter()
        try:
            with open(setting_dir / "whitebox.log", "w") as err, contextlib.redirect_stderr(err), \
                    contextlib.redirect_stdout(io.StringIO()):
                r = reference(runs[0], cache=self.datasets_cache)
        except Exception as exc:  # noqa: BLE001
            secs = time.perf_counter() - start
            self.wall(setting_dir.name, "whitebox", secs, f"crash: {exc}")
            self.failed(setting_dir.name, "whitebox", repr(exc))
            self.log(f"{setting_dir.name} whitebox: FAILED ({exc!r})")
            return
        secs = time.perf_counter() - start
        tmp = target.with_name("whitebox.json.tmp")
        tmp.write_text(json.dumps(r, indent=1) + "\n")
        tmp.replace(target)
        self.wall(setting_dir.name, "whitebox", secs, 0)
        self.log(f"{setting_dir.name} whitebox: attackable {r['attackable']}/{r['total']} "
                 f"(not: {r['not_attackable']}) in {secs:.0f} s")

    def setting(self, ds: str, p: str, eps: str, tgt: str) -> None:
        name = f"{ds}-p{p}-eps{eps}-{tgt}"
        d = self.out / name
        d.mkdir(parents=True, exist_ok=True)
        if self.ineligible(d).exists():
            self.log(f"{name}: skipped (recorded earlier: {self.ineligible(d).read_text().strip()})")
            return
        args = ["--dataset", ds, "--portion", p, "--epsilon", eps]
        if tgt == "targeted":
            args.append("--targeted")
        elif tgt != "untargeted":
            raise SystemExit(f"TARGETS: expected untargeted / targeted, got {tgt!r}")
        plan: list[tuple[str, list[str]]] = [
            (f"fedsquare-l{lam}", ["--method", "fedsquare", "--square-candidates", lam])
            for lam in self.lambdas
        ]
        grad = [m for m in self.methods if m not in SLOW]
        if grad:
            plan.append(("ls10-" + "+".join(grad),
                         ["--method", ",".join(grad), "--local-steps", "10"]))
        for m in (m for m in self.methods if m in SLOW):
            if self.fzoos_here(ds, p, eps, tgt):
                plan.append((f"{m}-ls10", ["--method", m, "--local-steps", "10"]))
            elif not (d / f"{m}-ls10.skipped").exists():
                (d / f"{m}-ls10.skipped").write_text(
                    f"not run: FZOOS_CELLS {self.fzoos_cells} (cost control, see grid.sh)\n")
                self.log(f"{name} {m}-ls10: not run here (cost control: FZOOS_CELLS)")
        plan += [(m, ["--method", m]) for m in self.extra_methods]
        start = time.perf_counter()
        ran = False
        for run_name, run_args in plan:
            status = self.run(d, run_name, [*args, *run_args])
            ran = ran or status != "skipped"
            if status == "ineligible":
                return
        ran = ran or not (d / "whitebox.json").exists()
        self.whitebox_ref(d)
        if ran:
            self.log(f"{name}: setting done in {time.perf_counter() - start:.0f} s")

    def __call__(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.log(f"code: {code_version()} (loaded once: every run of this process uses it)")
        self.log(f"grid start: datasets {self.datasets} P {self.portions} eps {self.epsilons} "
                 f"{self.targets}, K={self.images}, methods {self.methods}, fedsquare lambdas "
                 f"{self.lambdas}, extra {self.extra_methods}, fzoos cells {self.fzoos_cells}, "
                 f"flags {self.extra}")
        # (P, eps) outermost, the FIRST pairs (the "Must show" settings) before
        # the others, so that an interrupted grid has them for both data sets.
        pairs = [(p, eps) for p in self.portions for eps in self.epsilons]
        pairs.sort(key=lambda pe: self.first.index(pe) if pe in self.first else len(self.first))
        for p, eps in pairs:
            for ds in self.datasets:
                for tgt in self.targets:
                    self.setting(ds, p, eps, tgt)
        self.log("grid end")
        return 0


def code_version() -> str:
    """The commit this process runs and the uncommitted library files (methods change
    while a grid runs: a resumed grid may run other code than the runs before it)."""
    import subprocess

    root = HERE.parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "fedzoo", "fedzoo_attack",
                                "fedzoo_cli"], cwd=root, text=True, capture_output=True,
                               timeout=30).stdout.split("\n")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    changed = [ln[3:] for ln in dirty if ln.strip()]
    return f"commit {head or 'unknown'}" + (f", uncommitted: {changed}" if changed else "")


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    return Grid(Path(argv[0]), argv[1:])()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
