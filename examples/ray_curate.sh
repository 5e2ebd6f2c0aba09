#!/usr/bin/env bash
# Curate on Ray: the same COLA run, with source processing and feature shards on Ray workers.
# Without --address it starts a local Ray; on a cluster pass --address auto (or ray://HEAD:10001)
# and put $COLAKIT_CACHE on storage every node sees (docs/scale.md).
#
#   pip install "colakit[ray]"
#   bash examples/ray_curate.sh runs/ray-cola
#
# The CalibrationSet is the same bytes as a local run's (same content_hash): the executor changes
# where the work runs, never the result.
set -euo pipefail
OUT=${1:-runs/ray-cola}
COLAKIT=${COLAKIT:-colakit}

$COLAKIT curate --executor ray --workers 2 --method cola --n 8 --seq-len 64 --pool 8 \
  --feature-layers 0,3,6 --overwrite --out "$OUT/calib"
$COLAKIT inspect "$OUT/calib" --json > "$OUT/summary.json"
echo "summary: $OUT/summary.json"
