#!/usr/bin/env bash
# A targeted deployment: a model that will mostly do math. COLA with --target math weights the
# math probes x2 when it picks sources, then GPTQ 4-bit, then the retention report: what the
# compressed model kept of the dense model's math (and what it paid on general text).
#
#   bash examples/targeted_math.sh runs/targeted-math
#
# Budgets are tiny so it runs in minutes on a CPU. For a real run: --n 128 --seq-len 2048, no
# --pool / --feature-layers, and --suite quick (or gsm8k,math) for the evaluation.
set -euo pipefail
OUT=${1:-runs/targeted-math}
COLAKIT=${COLAKIT:-colakit}
mkdir -p "$OUT"

# 1. Curate: COLA over the default six sources, math-targeted. --feature-layers 0,3,6 stops every
#    forward after layer 6 (cheap features for a trial; the default hooks all 30 layers).
$COLAKIT curate --method cola --target math --n 8 --seq-len 64 --pool 8 --feature-layers 0,3,6 \
  --overwrite --out "$OUT/calib"
$COLAKIT inspect "$OUT/calib"                      # the source mix: math should get the largest share

# 2. Compress: GPTQ 4-bit (group size auto: 64 on this model), packed compressed-tensors checkpoint.
rm -rf "$OUT/gptq-w4"
$COLAKIT compress --calib "$OUT/calib" --method gptq --bits 4 --out "$OUT/gptq-w4"

# 3. Retention report: math-solution perplexity (the target) and wiki perplexity (the cost),
#    against the dense model evaluated on the same items. 1.0 = nothing lost.
$COLAKIT evaluate --model "$OUT/gptq-w4" --tasks ppl_math:4,ppl_wiki:4 --compare smollm2-135m \
  --out "$OUT/retention.json"
echo "retention report: $OUT/retention.json"
