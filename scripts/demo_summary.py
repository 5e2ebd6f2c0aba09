"""Print the demo's headline table: per calibration set, its activation-space scores and what the
GPTQ-compressed model retains of the dense model (per task and per capability)."""

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
tasks = list(results[sets[0]]["retention"]["tasks"])

table = Table(title=f"GPTQ w4 g64 on smollm2-135m: retention vs dense (1.0 = nothing lost; higher is better)")
table.add_column("calibration")
table.add_column("proxy score")
for task in tasks:
    table.add_column(task, justify="right")
table.add_column("mean", justify="right")
for s in sets:
    per_task = results[s]["retention"]["tasks"]
    values = [per_task[t]["retention"] for t in tasks]
    best = {t: max(results[x]["retention"]["tasks"][t]["retention"] for x in sets) for t in tasks}
    cells = [f"[bold]{v:.3f}[/]" if v == best[t] else f"{v:.3f}" for t, v in zip(tasks, values)]
    table.add_row(s, f"{scores[s]['proxy']:.3f}", *cells, f"{sum(values) / len(values):.3f}")
console = Console()
console.print(table)
dense = json.loads((out / "dense.json").read_text())
console.print("dense model: " + ", ".join(f"{n} {t['primary']} {t['metrics'][t['primary']]:.3f}"
                                          for n, t in dense["tasks"].items()))
console.print(f"outputs in {out}/: calib-*/ (CalibrationSets), gptq-*/ (compressed models), *.json (results)")
