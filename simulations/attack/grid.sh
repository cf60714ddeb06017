#!/usr/bin/env bash
# The broadened attack benchmark (issue 15, Deliver 2): every attack method next to the
# white-box reference over a grid of settings. N = 10 clients, --images K test images per
# setting (default 4, drawn with --seed 0 among those eligible under --selection known),
# --budget 20000 queries per image (all clients), success reported at 2k/5k/10k/20k
# queries (summarize.py adds 10/20/40 exchanges).
#
# Grid: P (PORTIONS) {0.7, 0.5, 0.3, 1.0} x eps (EPSILONS) {0.3, 0.2, 0.1} x DATASETS
# {mnist5k, digits} x TARGETS {untargeted, targeted} = 48 settings, run in that order
# except that the (P, eps) pairs in FIRST (default "0.7:0.3 0.5:0.2 0.5:0.1", the issue's
# "Must show" settings) come first, for both data sets and both targetings. P = 0.3 and 1.0 (and every digits P) train their client models on demand
# (cached in $FEDZOO_CACHE/models, about 1.5 s per MNIST-5k model, 0.2 s per digits model).
#
# Per setting, in OUT_ROOT/<dataset>-p<P>-eps<EPS>-<untargeted|targeted>/:
#   fedsquare-l<L>/  one fedsquare run per lambda (--square-candidates) in SQUARE_LAMBDAS
#   ls10-<m1>+<m2>/  one run of the gradient-type METHODS but fzoos-paper, --local-steps 10
#   fzoos-paper-ls10/  the gradient FZooS (the paper's; `--method fzoos` meant it until
#                    3 Dec 17:34), --local-steps 10, its own run: the slow one, see below
#   <m>/             one run per EXTRA_METHODS entry at its defaults: fzoos (in an attack
#                    fedzoo's default attack, fzoos-vertex, with its attack defaults) and
#                    fzoos-square
#   whitebox.json    whitebox_reference.py on the setting's images (same for every run)
#   <run>.log / <run>.txt: each run's stderr (progress) / stdout (table)
#   ineligible-k<K>.txt  when fewer than K images are eligible (the setting is skipped)
# OUT_ROOT/grid.log: one line per run (seconds, status); OUT_ROOT/wall.tsv: setting, run,
# seconds, exit status; OUT_ROOT/failures.txt: runs that failed (the grid goes on). A run
# whose summary.json exists is skipped, so the same command resumes an interrupted grid
# (a partial run is started again). The runs go through grid.py: one Python process for
# the whole grid (torch and the data imported once; a process per run cost 6-8 s each).
# That process runs the code it loaded at its start (grid.log's "code:" line names the
# commit): a method changed since runs in its old form until the grid is restarted, and
# its finished runs are not redone; move them aside to rerun them on the new code.
#
# Cost control (measured on the shared 2-core box, 3 Dec): in the easiest setting
# (mnist5k, P = 0.7, eps = 0.3, untargeted; every image fooled) the runs took fedsquare
# 2-6 s per lambda, the four gradient-type methods together 48 s, the gradient FZooS
# (--local-steps 10: 3.8 s per round, ~25 s per fooled image, ~75 s per unfooled one)
# 106 s, fzoos-square 9 s, the white box 4 s: 180 s in all. With the gradient FZooS in
# all 24 MNIST-5k cells (most of them harder: fewer images fooled, each unfooled one runs
# to 20k queries) it alone would take about 1-2 hours of one core, beyond the ~90 minutes
# allowed. By default fzoos-paper runs only on the issue's six MNIST-5k settings (P, eps)
# in {(0.7, 0.3), (0.5, 0.2), (0.5, 0.1)} x {untargeted, targeted} and on every digits
# setting (d = 64; still 52-106 s per setting measured: the surrogate's cost barely
# depends on d); the other 18 MNIST-5k cells have no fzoos-paper run (a
# `fzoos-paper-ls10.skipped` file says so). fzoos (fzoos-vertex) is cheaper (20-60 s per
# setting measured) and runs everywhere. FZOOS_CELLS="all" runs fzoos-paper everywhere;
# otherwise it is a list of dataset:P:eps:target patterns (bash globs, e.g. "digits:*:*:*").
#
# Usage: simulations/attack/grid.sh OUT_ROOT [extra fedzoo attack flags ...]
#   FEDZOO=.venv/bin/fedzoo simulations/attack/grid.sh runs/attack-grid
#   (a method added to chosen settings later, nothing else rerun:)
#   EXTRA_METHODS=mymethod METHODS= SQUARE_LAMBDAS= DATASETS=mnist5k PORTIONS="0.7 0.5" \
#     EPSILONS="0.3 0.2" FEDZOO=.venv/bin/fedzoo simulations/attack/grid.sh runs/attack-grid
# Environment: DATASETS, PORTIONS, EPSILONS, TARGETS ("untargeted targeted"), FIRST,
# IMAGES (4),
# METHODS ("fedzo fedprox scaffold1 scaffold2 fzoos-paper"; "" for none), SQUARE_LAMBDAS
# ("1 5 10 27"), EXTRA_METHODS ("fzoos fzoos-square"), FZOOS_CELLS (see above), WHITEBOX (1; 0
# to skip the white-box reference), PLOTS (0: runs get --no-plot; summarize.py --plots
# draws per setting), FEDZOO (the fedzoo executable, default the one on PATH: the python
# of its installation runs grid.py), PYTHON (that python, to give it directly).
# Then: python simulations/attack/grid_summary.py [--plots DIR] OUT_ROOT
set -euo pipefail
OUT=${1:?usage: grid.sh OUT_ROOT [extra fedzoo attack flags]}
FEDZOO=${FEDZOO:-fedzoo}
if [ -z "${PYTHON:-}" ]; then
  PYTHON="$(dirname "$(command -v "$FEDZOO")")/python"
  [ -x "$PYTHON" ] || PYTHON=python3
fi
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
mkdir -p "$OUT"
exec "$PYTHON" "$(cd "$(dirname "$0")" && pwd)/grid.py" "$@"
