#!/usr/bin/env bash
# The attack benchmark (issue 4, "Must show"): N = 10 clients, P in {0.5, 0.7},
# eps in {0.2, 0.3}, K = 15 MNIST-5k test images (drawn with --seed 0 among those eligible
# under the default --selection known: the averaged logits and every client model trained
# on the image's class classify it correctly), methods fzoos, fedzo, scaffold2, fedprox,
# every method at its default settings, a total budget of 20k queries per image (all
# clients), each image stopped at its first success.
#
# Usage: simulations/attack/benchmark.sh OUT_ROOT [extra fedzoo flags ...]
#   simulations/attack/benchmark.sh runs/attack
#       (the full sweep: BENCHMARKS.md section 6; ~25 min on the 2-core box)
#   CONFIGS="0.7:0.3" IMAGES=5 simulations/attack/benchmark.sh runs/attack-quick
#       (quick check: one setting, 5 images; 124 s measured)
#   IMAGES=3 simulations/attack/benchmark.sh runs/attack-quick3
#       (all four settings, 3 images each; about 5 min)
#   CONFIGS="0.5:0.2" simulations/attack/benchmark.sh runs/attack   (one configuration)
#   simulations/attack/benchmark.sh runs/attack-fast --gp-history 150 --rff-features 2000
#       (the cheaper FZooS surrogate of the earlier sweep in RESULTS.md)
# Environment: CONFIGS ("P:EPS ..." pairs, default all four), IMAGES (K, default 15),
# FEDZOO (the fedzoo executable, default the one on PATH).
# Extra flags apply to every method (gp-history / rff-features only matter to FZooS).
# Then: python simulations/attack/summarize.py OUT_ROOT
set -euo pipefail
OUT=${1:?usage: benchmark.sh OUT_ROOT [extra flags]}
shift
FEDZOO=${FEDZOO:-fedzoo}
CONFIGS=${CONFIGS:-"0.5:0.2 0.5:0.3 0.7:0.2 0.7:0.3"}
IMAGES=${IMAGES:-15}
export OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT"
for PE in $CONFIGS; do
  P=${PE%%:*}
  EPS=${PE##*:}
  NAME="p$P-eps$EPS"
  start=$(date +%s)
  "$FEDZOO" attack --clients 10 --portion "$P" --epsilon "$EPS" --images "$IMAGES" \
    --method fzoos,fedzo,scaffold2,fedprox --budget 20000 --local-steps 10 --seed 0 \
    --out "$OUT/$NAME" "$@" 2> "$OUT/$NAME.log" | tee "$OUT/$NAME.txt"
  echo "$NAME: $(( $(date +%s) - start )) s wall" | tee -a "$OUT/wall.txt"
done
