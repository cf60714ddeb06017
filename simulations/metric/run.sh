#!/usr/bin/env bash
# Non-differentiable metric optimisation (FZooS, arXiv 2308.04077, Sec. 6.3): the last
# layer (d = 330) of a 64-32-10 MLP trained on scikit-learn's digits; client i minimises
# 1 - macro metric on its class-portion share (N = 10, P = 0.5) of the held-out digits.
# Every method gets the same total budget of 10k queries (all clients) and is compared
# at the last round within it; 3 seeds (seed = MLP, client split and run).
# Usage: simulations/metric/run.sh [OUT_ROOT] [extra fedzoo flags]  (default runs/metric)
set -euo pipefail
OUT=${1:-runs/metric}
shift || true
FEDZOO=${FEDZOO:-fedzoo}
METRICS=${METRICS:-"f1 precision recall jaccard"}
export OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT"
for METRIC in $METRICS; do
  start=$(date +%s)
  "$FEDZOO" metric --clients 10 --portion 0.5 --metric "$METRIC" \
    --method fzoos,fedzo,scaffold2,fedprox --seeds 0,1,2 --budget 10000 --local-steps 10 \
    --out "$OUT/$METRIC" "$@" 2> "$OUT/$METRIC.log" | tee "$OUT/$METRIC.txt"
  echo "$METRIC: $(( $(date +%s) - start )) s wall" | tee -a "$OUT/wall.txt"
done
