#!/usr/bin/env bash
# The paper's federated synthetic functions (FZooS, arXiv 2308.04077, Sec. 6.1), at a size
# a 2-core CPU box finishes in minutes: d = 300, N = 5 clients, R = 30 rounds, T = 10,
# every method, default settings. Heterogeneity C = 0.5 (mild) and 5 (strong) on the
# quadratic, C = 0.5 on Ackley and Levy. Writes OUT/<problem>-C<c>/{comparison.csv,png}.
# Usage: simulations/synthetic/run.sh [OUT_ROOT]      (default runs/synthetic)
set -euo pipefail
OUT=${1:-runs/synthetic}
FEDZOO=${FEDZOO:-fedzoo}
export OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT"
METHODS=fzoos,fedzo,fedprox,scaffold1,scaffold2
for PC in quadratic:0.5 quadratic:5 ackley:0.5 levy:0.5; do
  PROBLEM=${PC%%:*}
  C=${PC##*:}
  start=$(date +%s)
  "$FEDZOO" compare --problem "$PROBLEM" --dim 300 --clients 5 --heterogeneity "$C" \
    --rounds 30 --local-steps 10 --seed 0 --methods "$METHODS" \
    --out "$OUT/$PROBLEM-C$C" 2> "$OUT/$PROBLEM-C$C.log" | tee "$OUT/$PROBLEM-C$C.txt"
  echo "$PROBLEM-C$C: $(( $(date +%s) - start )) s wall" | tee -a "$OUT/wall.txt"
done
