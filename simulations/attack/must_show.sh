#!/usr/bin/env bash
# Attacks II, "Must show": fedzoo's default attack (`--method fzoos`, which runs fzoos-vertex
# with its attack defaults) against fedsquare at every lambda in {1, 5, 10, 27}, on MNIST-5k,
# N = 10, (P, eps) in {(0.7, 0.3), (0.5, 0.2), (0.5, 0.1)}, untargeted and targeted, K images
# drawn with each seed (the seed also seeds the methods), a 20k-query hard budget.
# must_show.py then compares, per setting and seed, the success rate of fzoos with the best
# fedsquare lambda at 2k/5k/10k/20k queries and 10/20/40 exchanges.
#
# Usage: simulations/attack/must_show.sh OUT_ROOT SEEDS [VARIANT ...]
#   simulations/attack/must_show.sh runs/must-show "3"            # a seed the defaults never saw
#   simulations/attack/must_show.sh runs/tune "0" "k3:--method,fzoos,--local-steps,3"
# VARIANT = label:flags (commas for spaces); default: fzoos and fedsquare at the four lambdas.
# Resumable: a run whose summary.json exists is skipped. Environment: IMAGES (default 8),
# FEDZOO (default .venv/bin/fedzoo), SETTINGS ("P:EPS:u|t ...", default the six above).
# Measured on the shared 2-core box: 3-6 min per setting and seed (ε = 0.1: longer, most
# images reach the budget).
set -u
OUT=${1:?usage: must_show.sh OUT_ROOT SEEDS [VARIANT ...]}
SEEDS=${2:?usage: must_show.sh OUT_ROOT SEEDS [VARIANT ...]}
shift 2
if [ $# -eq 0 ]; then
  set -- "fzoos:--method,fzoos" "sq1:--method,fedsquare,--square-candidates,1" \
    "sq5:--method,fedsquare,--square-candidates,5" "sq10:--method,fedsquare,--square-candidates,10" \
    "sq27:--method,fedsquare,--square-candidates,27"
fi
FEDZOO=${FEDZOO:-.venv/bin/fedzoo}
SETTINGS=${SETTINGS:-"0.7:0.3:u 0.7:0.3:t 0.5:0.2:u 0.5:0.2:t 0.5:0.1:u 0.5:0.1:t"}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
for S in $SEEDS; do
  for SET in $SETTINGS; do
    IFS=: read -r P E T <<< "$SET"
    TF=""; [ "$T" = t ] && TF="--targeted"
    for V in "$@"; do
      NAME=${V%%:*}; FL=${V#*:}; FL=${FL//,/ }
      D=$OUT/s$S-p$P-e$E-$T/$NAME
      [ -f "$D/summary.json" ] && continue
      mkdir -p "$(dirname "$D")"
      # shellcheck disable=SC2086
      "$FEDZOO" attack --clients 10 --portion "$P" --epsilon "$E" $TF --images "${IMAGES:-8}" \
        --budget 20000 --report-budgets 2000,5000,10000,20000 --seed "$S" --out "$D" --no-plot \
        $FL > "$D.log" 2>&1 || echo "FAILED $D (see $D.log)"
    done
  done
done
echo "done: python simulations/attack/must_show.py $OUT"
