#!/usr/bin/env bash
# Compare three calibration sets with `colakit run`: curate -> score -> compress -> evaluate for
# each (examples/compare_three.yaml), then `colakit report` (HTML + markdown summary).
#
#   bash examples/compare_three.sh runs/compare-three
#
# The run directory resumes: run it again and finished cells are skipped.
set -euo pipefail
OUT=${1:-runs/compare-three}
COLAKIT=${COLAKIT:-colakit}
HERE=$(cd "$(dirname "$0")" && pwd)

$COLAKIT run "$HERE/compare_three.yaml" --out "$OUT" --dry-run     # the cells it will run
$COLAKIT run "$HERE/compare_three.yaml" --out "$OUT"
$COLAKIT report "$OUT"                                               # prints the table and the HTML path
