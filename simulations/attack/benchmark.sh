#!/usr/bin/env bash
# The attack benchmark (issue 4, "Must show"): N = 10 clients, P in {0.5, 0.7},
# eps in {0.2, 0.3}, K = 15 MNIST-5k test images, four methods, 20k total queries per
# image (all clients), each image stopped at its first success. Default settings of
# every method (FZooS: gp-history 300, rff-features 10000, T = 10, Adam lr 0.01).
# About 35-45 minutes on a 2-core CPU box. Usage:
#   simulations/attack/benchmark.sh [OUT_ROOT]        (default runs/attack)
# then: python simulations/attack/summarize.py OUT_ROOT
set -euo pipefail
OUT=${1:-runs/attack}
FEDZOO=${FEDZOO:-fedzoo}
export OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT"
for P in 0.5 0.7; do
  for EPS in 0.2 0.3; do
    start=$(date +%s)
    "$FEDZOO" attack --clients 10 --portion "$P" --epsilon "$EPS" --images 15 \
      --method fzoos,fedzo,scaffold2,fedprox --budget 20000 --local-steps 10 --seed 0 \
      --out "$OUT/p$P-eps$EPS" 2> "$OUT/p$P-eps$EPS.log" | tee "$OUT/p$P-eps$EPS.txt"
    echo "p$P-eps$EPS: $(( $(date +%s) - start )) s wall" | tee -a "$OUT/wall.txt"
  done
done
