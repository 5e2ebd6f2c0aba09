#!/usr/bin/env bash
# The main job on the default model, small enough for 2 CPU cores (~15 minutes):
# curate two calibration sets (random C4, the usual baseline; COLA over five sources), score them
# in activation space, compress the model with GPTQ 4-bit using each, and measure what each
# compressed model keeps of the dense model's perplexity and commonsense accuracy.
set -euo pipefail
OUT=${1:-runs/demo}
COLAKIT=${COLAKIT:-.venv/bin/colakit}
N=${DEMO_N:-32}
LEN=${DEMO_SEQ_LEN:-256}
# TASK:N evaluates N seeded items (perplexity: N held-out documents)
EVAL_TASKS=${DEMO_TASKS:-ppl_wiki:8,ppl_c4:8,ppl_code:8,arc_easy:60,hellaswag:60,piqa:60}
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "1/5 curate: random C4 windows (baseline) and COLA over c4, wiki, code, math, commonsense"
$COLAKIT curate --method random --sources c4 --n "$N" --seq-len "$LEN" --seed 0 \
  --out "$OUT/calib-random-c4" --overwrite
$COLAKIT curate --method cola --sources c4,wiki,code,math,commonsense --n "$N" --seq-len "$LEN" --seed 0 \
  --pool 48 --feature-layers every:2 --out "$OUT/calib-cola" --overwrite
$COLAKIT inspect "$OUT/calib-cola"

step "2/5 score both sets in activation space (representativeness, diversity) before compressing"
for calib in random-c4 cola; do
  $COLAKIT score "$OUT/calib-$calib" --probes 8 --feature-layers every:2 --json > "$OUT/score-$calib.json"
done

step "3/5 evaluate the dense model"
[ -f "$OUT/dense.json" ] || $COLAKIT evaluate --model smollm2-135m --suite "$EVAL_TASKS" --seed 0 --out "$OUT/dense.json"

step "4/5 compress with GPTQ 4-bit (group 64), once per calibration set"
for calib in random-c4 cola; do
  [ -d "$OUT/gptq-$calib" ] || $COLAKIT compress --model smollm2-135m --calib "$OUT/calib-$calib" --method gptq \
    --bits 4 --group-size 64 --out "$OUT/gptq-$calib"
done

step "5/5 evaluate each compressed model against the dense one"
for calib in random-c4 cola; do
  [ -f "$OUT/gptq-$calib.json" ] || $COLAKIT evaluate --model "$OUT/gptq-$calib" --suite "$EVAL_TASKS" \
    --seed 0 --compare "$OUT/dense.json" --out "$OUT/gptq-$calib.json"
done

"${PYTHON:-.venv/bin/python}" scripts/demo_summary.py "$OUT"
