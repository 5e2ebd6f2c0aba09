"""Fabricate run directories that follow the ``colakit run`` contract, for the report's tests.

``fabricate_rundir`` builds a realistic small grid (3 curations x 2 compressions x 2 sequence
lengths x 2 seeds, one failed cell, a flagged task, activation maps, proxy scores) from a seeded
generator; ``write_rundir`` writes any hand-made rows for exact checks.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

from colakit.grid.rundir import REQUIRED_COLUMNS

CURATIONS = {"random-c4": ("random", "c4"), "cola": ("cola", "c4+wiki+code+math+commonsense"),
             "zipcal": ("zipcal", "c4+wiki")}
COMPRESSIONS = {"sparsegpt-50": "sparsegpt", "gptq-w4": "gptq"}
SEQ_LENS = (128, 256)
SEEDS = (0, 1)
# task -> (capability, accuracy metric or None for perplexity tasks, dense accuracy, dense bpb / perplexity)
TASKS = {
    "ppl_wiki": ("LM", None, None, 23.1),
    "ppl_c4": ("LM", None, None, 28.9),
    "ppl_multilingual": ("Multilingual", None, None, 41.7),
    "arc_easy": ("Commonsense", "acc_norm", 0.58, 1.21),
    "hellaswag": ("Commonsense", "acc_norm", 0.41, 1.05),
    "mmlu": ("Knowledge", "acc", 0.252, 1.48),  # at chance (4 choices): flagged
    "gsm8k": ("Math", "exact_match", 0.12, 0.93),
}
# How much each curation keeps per capability beyond the compression's base loss (COLA best on Math).
EFFECT = {"random-c4": {}, "cola": {"Math": 0.05, "LM": 0.02, "Commonsense": 0.01},
          "zipcal": {"Multilingual": 0.03, "Math": -0.04}}
BASE = {"sparsegpt-50": 0.86, "gptq-w4": 0.95}
FAILED = "gptq-w4__zipcal__seq_len256__s1"


def cell_id(comp: str, cur: str, seq_len: int, seed: int) -> str:
    return f"{comp}__{cur}__seq_len{seq_len}__s{seed}"


def write_rundir(root: Path, rows: list[dict], meta: dict | None = None, maps: dict[str, dict] | None = None,
                 extra_columns: tuple[str, ...] = ()) -> Path:
    """Write run.json, results.csv (every required column, then ``extra_columns``; missing keys empty) and
    activation maps."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    meta = {"name": "test-run", "model": "smollm2-135m", "created": "2025-11-02T10:00:00+00:00",
            "colakit_version": "0.1.0", "baseline": "random-c4", "sweeps": {}, "config": {}, **(meta or {})}
    (root / "run.json").write_text(json.dumps(meta, indent=2))
    columns = [*REQUIRED_COLUMNS, *extra_columns]
    with open(root / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    for cell, amap in (maps or {}).items():
        (root / "cells" / cell).mkdir(parents=True, exist_ok=True)
        (root / "cells" / cell / "activation_map.json").write_text(json.dumps(amap))
    return root


def _map(cell: str, curation: str, rng: random.Random, per_source: int = 60, selected: int = 16) -> dict:
    centres = {"c4": (0.0, 0.0), "wiki": (2.5, 1.0), "code": (-2.0, 2.2), "math": (1.0, -2.4)}
    points = [{"x": round(cx + rng.gauss(0, 0.8), 5), "y": round(cy + rng.gauss(0, 0.8), 5), "source": src,
               "selected": False} for src, (cx, cy) in centres.items() for _ in range(per_source)]
    for i in rng.sample(range(len(points)), selected):
        points[i]["selected"] = True
    return {"cell": cell, "curation": curation, "projection": "pca", "points": points}


def fabricate_rundir(root: Path, seed: int = 0, flag_reason: bool = True) -> Path:
    """A realistic grid following the contract; deterministic for a given ``seed``."""
    rng = random.Random(seed)
    rows: list[dict] = []
    retention: dict[tuple, float] = {}  # (comp, seq_len, seed, task, kind) -> baseline retention
    for comp, comp_method in COMPRESSIONS.items():
        for seq_len in SEQ_LENS:
            for s in SEEDS:
                for cur, (cur_method, sources) in CURATIONS.items():  # baseline first: deltas need it
                    cell = cell_id(comp, cur, seq_len, s)
                    base = {"cell": cell, "curation": cur, "curation_method": cur_method, "sources": sources,
                            "compression": comp, "compression_method": comp_method, "seed": s, "n": 32,
                            "seq_len": seq_len, "format": "plain", "curate_s": round(rng.uniform(5, 40), 2)}
                    if cell == FAILED:
                        rows.append({**base, "status": "failed",
                                     "error": "RuntimeError: Hessian of model.layers.3.mlp.down_proj is not "
                                              "positive definite after 5 dampening increases"})
                        continue
                    quality = rng.uniform(0.45, 0.55) + sum(EFFECT[cur].values())
                    scores = {"representativeness": round(quality + rng.gauss(0, 0.02), 4),
                              "diversity": round(rng.uniform(0.3, 0.6), 4)}
                    scores["proxy"] = round((scores["representativeness"] + scores["diversity"]) / 2, 4)
                    common = {**base, **scores, "status": "ok", "compress_s": round(rng.uniform(20, 90), 2),
                              "eval_s": round(rng.uniform(30, 120), 2)}
                    for task, (cap, acc_metric, dense_acc, dense_lik) in TASKS.items():
                        # Longer calibration sequences help a little; seeds scatter.
                        keep = BASE[comp] + EFFECT[cur].get(cap, 0.0) + (seq_len - 128) / 128 * 0.01
                        kinds = [("perplexity", "perplexity", dense_lik)] if acc_metric is None else [
                            (acc_metric, "accuracy", dense_acc), ("gold_bpb", "likelihood", dense_lik)]
                        for metric, kind, dense in kinds:
                            r = keep + rng.gauss(0, 0.012 if kind != "accuracy" else 0.04)
                            if task == "mmlu" and kind == "accuracy":
                                r = 1.0 + rng.gauss(0, 0.03)
                            # retention = compressed/dense for accuracy, dense/compressed for ppl and bpb
                            value = dense * r if kind == "accuracy" else dense / r
                            se = (0.02 if kind != "accuracy" else 0.07) * rng.uniform(0.8, 1.2)
                            row = {**common, "task": task, "capability": cap, "metric": metric,
                                   "metric_kind": kind, "value": round(value, 5), "dense_value": dense,
                                   "retention": round(r, 5), "retention_stderr": round(se, 5),
                                   "flagged": str(task == "mmlu")}
                            if task == "mmlu" and flag_reason:
                                row["flag_reason"] = "dense acc 0.252 is within 2 stderr of chance (0.25)"
                            key = (comp, seq_len, s, task, kind)
                            if cur == "random-c4":
                                retention[key] = r
                            else:
                                delta = r - retention[key]
                                row["delta_vs_baseline"] = round(delta, 5)
                                row["p_value"] = round(min(1.0, math.exp(-abs(delta) * 120)), 6)
                            rows.append(row)
    tested = [r for r in rows if r.get("p_value") not in (None, "")]
    for r in tested:  # Bonferroni, enough for a fixture
        r["p_adjusted"] = round(min(1.0, r["p_value"] * len(tested) / 20), 6)
        r["significant"] = str(r["p_adjusted"] < 0.05)
    maps = {cell_id("sparsegpt-50", "zipcal", 128, 0): _map(cell_id("sparsegpt-50", "zipcal", 128, 0), "zipcal", rng),
            cell_id("sparsegpt-50", "cola", 256, 0): _map(cell_id("sparsegpt-50", "cola", 256, 0), "cola", rng)}
    meta = {"name": "general-test", "sweeps": {"seq_len": list(SEQ_LENS), "n": [32]},
            "config": {"seeds": list(SEEDS)}}
    return write_rundir(root, rows, meta, maps, extra_columns=("flag_reason",) if flag_reason else ())
