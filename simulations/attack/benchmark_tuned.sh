#!/usr/bin/env bash
# The attack benchmark with tuned settings (same problems, images and budget as
# benchmark.sh; see RESULTS.md for how they were chosen, on P = 0.5, eps = 0.3 only):
#   FZooS: --gp-history 150 --rff-features 2000 (cheaper) and --explore-points 2
#          --sync-points 20 (fewer active queries per round), Adam lr 0.01 (default);
#   FedZO, SCAFFOLD-2, FedProx: Adam lr 0.03 (their best of 0.01 / 0.03 / 0.1 at 20k).
# Usage: simulations/attack/benchmark_tuned.sh OUT_ROOT    (CONFIGS="0.5:0.3" for a subset)
# Then:  python simulations/attack/summarize.py OUT_ROOT
set -euo pipefail
OUT=${1:?usage: benchmark_tuned.sh OUT_ROOT}
FEDZOO=${FEDZOO:-fedzoo}
CONFIGS=${CONFIGS:-"0.5:0.2 0.5:0.3 0.7:0.2 0.7:0.3"}
export OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT"
COMMON=(--clients 10 --images 15 --budget 20000 --local-steps 10 --seed 0)
for PE in $CONFIGS; do
  P=${PE%%:*}
  EPS=${PE##*:}
  NAME="p$P-eps$EPS"
  start=$(date +%s)
  "$FEDZOO" attack --portion "$P" --epsilon "$EPS" "${COMMON[@]}" --method fzoos \
    --gp-history 150 --rff-features 2000 --explore-points 2 --sync-points 20 \
    --out "$OUT/$NAME/fzoos-tuned" 2> "$OUT/$NAME-fzoos.log" | tee "$OUT/$NAME-fzoos.txt"
  "$FEDZOO" attack --portion "$P" --epsilon "$EPS" "${COMMON[@]}" \
    --method fedzo,scaffold2,fedprox --lr 0.03 \
    --out "$OUT/$NAME/baselines-lr0.03" 2> "$OUT/$NAME-baselines.log" | tee "$OUT/$NAME-baselines.txt"
  echo "$NAME: $(( $(date +%s) - start )) s wall" | tee -a "$OUT/wall.txt"
done
