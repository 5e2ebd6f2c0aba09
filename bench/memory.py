"""Peak memory and seconds per block of every stage on models whose weights stay on disk.

    python bench/memory.py [--models llama3-8b-width,smollm2-135m,gemma3-270m] [--layers 2]
                           [--stages features,sparsegpt,gptq,perplexity] [--n 16] [--seq-len 128]
                           [--dir /tmp/colakit-bench-memory] [--device cpu] [--dtype auto]

``llama3-8b-width``: random weights with LLaMA-3-8B's widths (hidden 4096, intermediate 14336, 32
heads / 8 KV heads, vocabulary 128256, untied head) but ``--layers`` decoder blocks, saved once in
bfloat16 (as the real model ships) under ``--dir``. ``smollm2-135m`` and ``gemma3-270m`` are the
built-in models (float32 on disk).

Each (model, stage) runs in a fresh subprocess, one at a time, and reports its own peak RSS
(``ru_maxrss``; and the peak device memory on a GPU) and wall time:

- ``features``: ``extract_features`` over ``--n`` windows of ``--seq-len`` c4 tokens, every layer
  hooked: tokens/s (reading the weights included); the worker reads the blocks up to the deepest hooked one only.
- ``sparsegpt`` (50%) and ``gptq`` (w4 g64): ``compress_to_dir`` from the files, block by block
  (fake-quant output, so the sizes compare), with ``--n`` calibration windows: seconds per block.
  The calibration set is cut from c4 in a process of its own first, so the peak is what
  ``colakit compress --calib DIR`` holds (the c4 text read for the windows is not in it).
- ``perplexity``: ``evaluate`` ``ppl_wiki`` on 2 documents, the model dispatched
  with ``device_map="auto"`` and ``max_memory`` = its largest block + 256 MiB on the CPU (the rest
  offloaded to disk, read in place).

Next to each compress peak the script prints the target formula of issue 20: one block's weights
(compute dtype) + its Hessians (a float32 [in, in] per linear, and one per KV head group for the
value projection, both methods' default) + the calibration activations (block inputs and dense
outputs: 2 x n x seq_len x hidden x 4 bytes) + 1 GiB. ``hessians_allocated`` is what the engine
allocates of them: the linears that read the same input (k and v after q, up after gate) share one. The
embeddings' size is printed too: the input capture reads only the rows the calibration ids use,
and the copy to the output goes a 16 MiB chunk at a time, so neither holds them whole.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

GiB, MiB = 2**30, 2**20
WIDE = dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
            vocab_size=128256, tie_word_embeddings=False, max_position_embeddings=8192, rope_theta=500000.0)


def wide_model(folder: Path, layers: int) -> Path:
    """The 8B-width random model with ``layers`` blocks, saved once (bfloat16 safetensors + the default tokenizer)."""
    path = folder / f"llama3-8b-width-{layers}L"
    if (path / "config.json").exists():
        return path
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from colakit.model.load import load_tokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(num_hidden_layers=layers, **WIDE), dtype=torch.bfloat16)
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp, max_shard_size="2GB")
    load_tokenizer("smollm2-135m").save_pretrained(tmp)  # its ids (< 49152) are all inside the vocabulary
    tmp.rename(path)
    return path


def windows(model: str, n: int, seq_len: int):
    from colakit.curate.process import windows as cut
    from colakit.data.sources import get_source
    from colakit.model.load import load_tokenizer

    tok = load_tokenizer(model)
    out = []
    for cand in cut(get_source("c4").documents("calibration"), tok, seq_len):
        out.append(cand)
        if len(out) == n:
            return tok, out
    raise SystemExit(f"c4 gave only {len(out)} windows of {seq_len} tokens")


def child(stage: str, model: str, n: int, seq_len: int, device: str, dtype: str, scratch: str) -> dict:
    """One stage in this process; returns its measurements."""
    import shutil

    import torch

    from colakit.memory import peak_memory

    if stage == "calib":  # in its own process: the compress stages' peaks are then compress's alone
        from colakit.calibset import CalibrationSet

        tok, cands = windows(model, n, seq_len)
        shutil.rmtree(Path(scratch) / "calib", ignore_errors=True)
        CalibrationSet.from_token_ids([c.input_ids for c in cands], tokenizer=tok, model=model).save(
            Path(scratch) / "calib")
        return {}
    tok, cands = windows(model, n, seq_len) if stage in ("features", "perplexity") else (None, None)
    started = time.perf_counter()
    facts: dict = {}
    if stage == "features":
        from colakit.curate.features import FeatureConfig, extract_features
        from colakit.model.load import ModelHandle

        shutil.rmtree(Path(scratch) / "features", ignore_errors=True)
        extract_features(cands, ModelHandle(model, tokenizer=tok), store_dir=Path(scratch) / "features", progress=False,
                         config=FeatureConfig(layers="all", device=device, dtype=dtype, batch_size=4))
        facts["tokens_per_s"] = round(n * seq_len / (time.perf_counter() - started), 1)  # loading included
    elif stage in ("sparsegpt", "gptq"):
        from colakit.compress import CompressionConfig, compress_to_dir

        shutil.rmtree(Path(scratch) / "out", ignore_errors=True)
        calib = Path(scratch) / "calib"  # written by the "calib" stage, which main runs first
        config = (CompressionConfig("sparsegpt", sparsity=0.5) if stage == "sparsegpt"
                  else CompressionConfig("gptq", bits=4, group_size=64))
        report = compress_to_dir(model, calib, Path(scratch) / "out", config, device=device, dtype=dtype,
                                 save_format="fake-quant")
        facts["block_seconds"] = report["block_seconds"]
        facts["loading"] = report.get("loading", "whole")
    elif stage == "perplexity":
        from colakit.evaluate import evaluate
        from colakit.model.checkpoint import Checkpoint
        from colakit.model.load import load_model, resolve_dtype, resolve_model
        from colakit.model.placement import largest_block
        from colakit.model.streamed import skeleton

        where = resolve_model(model)
        dt = resolve_dtype(dtype, torch.device(device if device != "auto" else "cpu"))
        shape = skeleton(where, dt)
        block = largest_block(shape, Checkpoint(where, shape.base_model_prefix), dt)[1]
        cap = {"cpu": block + 256 * MiB}
        m = load_model(model, device=device, dtype=dtype, device_map="auto", max_memory=cap)
        facts["max_memory_cpu_mib"] = round(cap["cpu"] / MiB)
        facts["placement"] = sorted({str(v) for v in getattr(m, "hf_device_map", {"": device}).values()})
        result = evaluate(m, tok, "ppl_wiki", limit=2)
        facts["ppl_wiki_token_ppl"] = round(result["tasks"]["ppl_wiki"]["metrics"]["token_perplexity"], 3)
    else:
        raise SystemExit(f"unknown stage {stage}")
    facts["seconds"] = round(time.perf_counter() - started, 1)
    return facts | peak_memory()


def formula(model_dir: Path, method: str, n: int, seq_len: int, itemsize: int = 4) -> dict:
    """The target of issue 20 for one compress run, from the model's config (bytes)."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model_dir).get_text_config()
    h, inter = c.hidden_size, c.intermediate_size
    head_dim = getattr(c, "head_dim", None) or h // c.num_attention_heads
    q, kv = c.num_attention_heads * head_dim, c.num_key_value_heads * head_dim
    block = (h * q + 2 * h * kv + q * h + 3 * h * inter) * itemsize
    ins = [h, h, h, q, h, h, inter]  # q k v o gate up down: one Hessian per linear, the count
    # both methods build the value projection's Hessian per KV head group (value_hessian="attention")
    groups = c.num_key_value_heads * h * h * 4
    hessians = sum(i * i for i in ins) * 4 + groups
    # what the engine allocates: k and v share q's input (and so its Hessian), up shares gate's
    allocated = (h * h + q * q + h * h + inter * inter) * 4 + groups
    act = 2 * n * seq_len * h * 4
    return {"block": block, "hessians": hessians, "hessians_allocated": allocated, "activations": act,
            "limit": block + hessians + act + GiB,
            "embeddings": c.vocab_size * h * itemsize * (1 if c.tie_word_embeddings else 2)}


def model_path(name: str, args) -> Path:
    if name == "llama3-8b-width":
        return wide_model(Path(args.dir), args.layers)
    from colakit.model.load import fetch_model

    return fetch_model(name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="llama3-8b-width,smollm2-135m,gemma3-270m")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--stages", default="features,sparsegpt,gptq,perplexity")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--dir", default="/tmp/colakit-bench-memory")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--child", nargs=2, metavar=("STAGE", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        facts = child(args.child[0], args.child[1], args.n, args.seq_len, args.device, args.dtype,
                      str(Path(args.dir) / "scratch"))
        print("RESULT " + json.dumps(facts))
        return
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models.split(","):
        path = model_path(name, args)
        disk = sum(f.stat().st_size for f in path.glob("*.safetensors"))
        print(f"{name}: {disk / GiB:.2f} GiB of safetensors at {path}", file=sys.stderr)
        stages = args.stages.split(",")
        if {"sparsegpt", "gptq"} & set(stages):
            stages = ["calib", *stages]
        for stage in stages:
            cmd = [sys.executable, __file__, "--child", stage, str(path), "--n", str(args.n), "--seq-len",
                   str(args.seq_len), "--dir", args.dir, "--device", args.device, "--dtype", args.dtype]
            done = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if done.returncode or line is None:
                print(f"{name} {stage} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                continue
            facts = json.loads(line.removeprefix("RESULT "))
            if stage == "calib":
                continue
            row = {"model": name, "stage": stage, "disk_gib": round(disk / GiB, 2), **facts}
            if stage in ("sparsegpt", "gptq"):
                f = formula(path, stage, args.n, args.seq_len)
                row["target_mib"] = {k: round(v / MiB) for k, v in f.items()}
                row["within_target"] = facts["host_rss_peak_mib"] <= f["limit"] / MiB
                blocks = facts["block_seconds"]
                row["s_per_block"] = round(sum(blocks) / len(blocks), 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else "?"
    print(f"load average after the run: {' '.join(load)}", file=sys.stderr)


if __name__ == "__main__":
    main()
