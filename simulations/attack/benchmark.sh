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
# FEDZOO (the fedzoo executable, default the one on PATH), METHODS (the methods of the
# main run, default "fzoos fedzo scaffold2 fedprox"), SQUARE_LAMBDAS (one extra run of
# fedsquare per candidates-per-exchange lambda, default "1 5 10 27"; "" for none),
# EXTRA_METHODS (one extra run each at its defaults, default "fzoos-square").
# Success is reported at 2k/5k/10k/20k queries; summarize.py adds the success at 10/20/40
# exchanges (rounds x exchanges per round) and, with --plots DIR, success against
# queries and against exchanges.
# In an attack `fzoos` runs fzoos-vertex (FZooS's corrected local steps on the L-inf ball's
# vertices, --local-steps 5 by default; docs/design.md §2.12); the other methods keep the
# shared default of 10 local steps. The paper's gradient FZooS is `fzoos-paper`.
# Extra flags apply to every method (gp-history / rff-features only matter to the gradient FZooS).
# Then: python simulations/attack/summarize.py OUT_ROOT
set -euo pipefail
OUT=${1:?usage: benchmark.sh OUT_ROOT [extra flags]}
shift
FEDZOO=${FEDZOO:-fedzoo}
CONFIGS=${CONFIGS:-"0.5:0.2 0.5:0.3 0.7:0.2 0.7:0.3"}
IMAGES=${IMAGES:-15}
METHODS=${METHODS:-"fzoos fedzo scaffold2 fedprox"}
SQUARE_LAMBDAS=${SQUARE_LAMBDAS-"1 5 10 27"}
EXTRA_METHODS=${EXTRA_METHODS-"fzoos-square"}
COMMON=(--clients 10 --budget 20000 --report-budgets 2000,5000,10000,20000 --seed 0)
export OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT"
for PE in $CONFIGS; do
  P=${PE%%:*}
  EPS=${PE##*:}
  NAME="p$P-eps$EPS"
  start=$(date +%s)
  if [ -n "$METHODS" ]; then
    "$FEDZOO" attack "${COMMON[@]}" --portion "$P" --epsilon "$EPS" --images "$IMAGES" \
      --method "$(echo $METHODS | tr ' ' ,)" \
      --out "$OUT/$NAME" "$@" 2> "$OUT/$NAME.log" | tee "$OUT/$NAME.txt"
  fi
  for L in $SQUARE_LAMBDAS; do
    "$FEDZOO" attack "${COMMON[@]}" --portion "$P" --epsilon "$EPS" --images "$IMAGES" \
      --method fedsquare --square-candidates "$L" --out "$OUT/$NAME-fedsquare-l$L" "$@" \
      2> "$OUT/$NAME-fedsquare-l$L.log" | tee "$OUT/$NAME-fedsquare-l$L.txt"
  done
  for M in $EXTRA_METHODS; do
    "$FEDZOO" attack "${COMMON[@]}" --portion "$P" --epsilon "$EPS" --images "$IMAGES" \
      --method "$M" --out "$OUT/$NAME-$M" "$@" 2> "$OUT/$NAME-$M.log" | tee "$OUT/$NAME-$M.txt"
  done
  echo "$NAME: $(( $(date +%s) - start )) s wall" | tee -a "$OUT/wall.txt"
done
