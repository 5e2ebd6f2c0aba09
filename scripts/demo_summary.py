"""Print the demo's headline table: per task, what the GPTQ-compressed model retains of the dense
model with each calibration set, and each set's activation-space proxy score."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
sets = ["random-c4", "cola"]
results = {s: json.loads((out / f"gptq-{s}.json").read_text()) for s in sets}
scores = {s: json.loads((out / f"score-{s}.json").read_text()) for s in sets}
dense = json.loads((out / "dense.json").read_text())

table = Table(title="GPTQ w4 g64 on smollm2-135m: retention vs dense (1.0 = nothing lost, higher is better; best in bold)")
table.add_column("task")
table.add_column("dense")
for s in sets:
    table.add_column(s, justify="right")
for task, dense_task in dense["tasks"].items():
    entries = {s: results[s]["retention"]["tasks"][task] for s in sets}
    best = max(e["retention"] for e in entries.values())
    cells = []
    for s in sets:
        e = entries[s]
        text = f"{e['retention']:.3f} ± {e['retention_stderr']:.3f}"
        cells.append(f"[bold]{text}[/]" if e["retention"] == best else text)
    table.add_row(task, f"{dense_task['primary']} {dense_task['metrics'][dense_task['primary']]:.3f}", *cells)
for cap in results[sets[0]]["retention"]["capabilities"]:
    table.add_row(f"[italic]{cap} (mean)[/]", "",
                  *(f"{results[s]['retention']['capabilities'][cap]['retention']:.3f}" for s in sets))
table.add_row("[italic]proxy score[/]", "", *(f"{scores[s]['proxy']:.3f}" for s in sets))
console = Console(width=max(Console().width, 110))
console.print(table)
console.print(f"outputs in {out}/: calib-*/ (CalibrationSets), gptq-*/ (compressed models), *.json (results, "
              "with per-item records and paired tests)")
