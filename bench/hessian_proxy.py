"""Does moments pooling pick calibration sets whose GPTQ/SparseGPT Hessians match the pool's?

One candidate pool (every source, the same windows for every method and seed); sets of ``n``
picked by random, COLA with mean pooling and COLA with moments pooling (with stage 1 source
shares, and stage 3 alone over the pooled sources), each over several seeds. For the inputs of
q_proj, gate_proj and down_proj of a few blocks of the dense model, the set's normalised Hessian
H_S = X_S^T X_S / tokens is compared with the pool's H_P:

  rel_fro    ||H_S - H_P||_F / ||H_P||_F (what the Hessian is dominated by: its big directions)
  whitened   ||W H_S W - I||_F / sqrt(d), W = (H_P + 0.01 mean diag I)^-1/2 (every direction
             counted alike, with GPTQ's dampening)
  topk_cov   tr(V^T H_P V) / tr(H_P), V = the top-k eigenvectors of H_S (does the set find the
             pool's important directions?)

lower is better for the first two, higher for the last. Optionally the COLA sets of some seeds
are saved as CalibrationSets for an end-to-end compress/evaluate check.

    COLAKIT_CACHE=.colakit-cache nice -n 10 .venv/bin/python bench/hessian_proxy.py --out runs/hessian-proxy
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from colakit.calibset import CalibrationSet
from colakit.curate.coverage import target_weights
from colakit.curate.features import FeatureConfig
from colakit.curate.pipeline import (
    CurateConfig,
    _sample,
    build_pool,
    build_probes,
    features_with_probes,
)
from colakit.curate.select import get_selector
from colakit.model.hooks import forward_until_stop, stop_after
from colakit.model.layers import find_decoder
from colakit.model.load import ModelHandle, load_model, load_tokenizer, tokenizer_hash

LINEARS = ("self_attn.q_proj", "mlp.gate_proj", "mlp.down_proj")


def selections(pool, feats: dict, probe_feats: dict, weights, n: int, seeds: list[int]) -> dict:
    """{(method, seed): (indices, selector info)} for random and the COLA variants."""
    sources = [c.source for c in pool]
    out = {}
    for seed in seeds:
        out[("random", seed)] = (get_selector("random").select(pool, None, n, seed).indices, {})
        for pooling, f in feats.items():
            cola = get_selector("cola")
            cola.plan(f, sources, probe_feats[pooling], weights, n)
            sel = cola.select(pool, f, n, seed)
            out[(f"cola-{pooling}", seed)] = (sel.indices, sel.info)
            sel3 = get_selector("cola", source_selection=False).select(pool, f, n, seed)
            out[(f"cola3-{pooling}", seed)] = (sel3.indices, sel3.info)
    return out


@torch.no_grad()
def hessians(model, pool, groups: dict, blocks: list[int], batch_size: int) -> tuple[dict, dict]:
    """X^T X (float64) per (group, linear) over the windows in each group, and token counts."""
    layout = find_decoder(model)
    mods = {f"{b}.{name}": layout.layers[b].get_submodule(name) for b in blocks for name in LINEARS}
    acc = {(g, k): torch.zeros(m.in_features, m.in_features, dtype=torch.float64)
           for g in groups for k, m in mods.items()}
    tokens = {g: 0 for g in groups}
    member = {g: set(idx) for g, idx in groups.items()}
    state = {}

    def hook_for(key):
        def hook(_mod, args):
            x = args[0].float()
            for r, cand in enumerate(state["rows"]):
                xs = x[r][state["mask"][r]]
                gram = (xs.T @ xs).double()  # one window's X^T X in float32, summed in float64
                for g in groups:
                    if cand in member[g]:
                        acc[(g, key)] += gram
        return hook

    handles = [m.register_forward_pre_hook(hook_for(k)) for k, m in mods.items()]
    handles.append(stop_after(layout.layers[max(blocks)]))
    try:
        for start in range(0, len(pool), batch_size):
            idx = list(range(start, min(start + batch_size, len(pool))))
            longest = max(len(pool[i].input_ids) for i in idx)
            ids = torch.zeros(len(idx), longest, dtype=torch.long)
            mask = torch.zeros(len(idx), longest, dtype=torch.bool)
            for r, i in enumerate(idx):
                ids[r, :len(pool[i].input_ids)] = torch.tensor(pool[i].input_ids)
                mask[r, :len(pool[i].input_ids)] = True
            state.update(rows=idx, mask=mask)
            forward_until_stop(model, input_ids=ids, attention_mask=mask.long(), use_cache=False)
            for g in groups:
                tokens[g] += sum(len(pool[i].input_ids) for i in idx if i in member[g])
    finally:
        for h in handles:
            h.remove()
    return acc, tokens


def top_eigvecs(h: torch.Tensor, k: int, iters: int = 8, seed: int = 0) -> torch.Tensor:
    """The top-k eigenvectors of a PSD matrix by subspace iteration (cheaper than a full eigh)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(h @ torch.randn(h.shape[0], k + 8, generator=gen, dtype=h.dtype))[0]
    for _ in range(iters):
        q = torch.linalg.qr(h @ q)[0]
    evals, small = torch.linalg.eigh(q.T @ h @ q)  # Rayleigh-Ritz
    return (q @ small)[:, -k:]


def metrics(h_s: torch.Tensor, h_p: torch.Tensor, h_p_inv: torch.Tensor, k: int) -> dict:
    rel = float(torch.linalg.norm(h_s - h_p) / torch.linalg.norm(h_p))
    # ||W H_S W - I||_F^2 with W^2 = h_p_inv: tr(B B) - 2 tr(B) + d, B = h_p_inv H_S (one product)
    d = h_p.shape[0]
    b = h_p_inv @ h_s
    wht = math.sqrt(max(float((b * b.T).sum() - 2 * torch.trace(b) + d), 0.0) / d)
    top = top_eigvecs(h_s, k)
    cov = float(torch.trace(top.T @ h_p @ top) / torch.trace(h_p))
    return {"rel_fro": rel, "whitened": wht, "topk_cov": cov}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sources", default="c4,wiki,code,math,commonsense")
    ap.add_argument("--per-source", type=int, default=48)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--blocks", default="0,10,20,29")
    ap.add_argument("--probes", type=int, default=16, help="probe windows per capability (COLA stage 1)")
    ap.add_argument("--topk", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--save-sets", default="0,1", help="seeds whose cola-mean/cola-moments sets are saved")
    ap.add_argument("--out", type=Path, default=Path("runs/hessian-proxy"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    blocks = [int(b) for b in args.blocks.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    torch.manual_seed(0)

    tok = load_tokenizer(args.model)
    model = load_model(args.model, device="cpu", dtype="float32")
    cfg = CurateConfig(model=args.model, sources=args.sources.split(","), method="cola", n=args.n,
                       seq_len=args.seq_len, seed=0, pool_per_source=args.per_source,
                       probes_per_capability=args.probes)
    pool, provenance = build_pool(cfg, tok)
    weights = target_weights("general")
    probes = build_probes(cfg, tok, [c for c, w in weights.items() if w > 0])
    print(f"pool {len(pool)} windows x {args.seq_len} tokens; {sum(map(len, probes.values()))} probes "
          f"[{time.time() - t0:.0f}s]", flush=True)

    feats, probe_feats, feat_time = {}, {}, {}
    for pooling in ("mean", "moments"):
        t = time.time()
        fc = FeatureConfig(pooling=pooling, device="cpu", dtype="float32")
        feats[pooling], probe_feats[pooling] = features_with_probes(
            pool, probes, ModelHandle(args.model, model=model, tokenizer=tok), config=fc)
        feat_time[pooling] = time.time() - t
        print(f"features {pooling}: {feats[pooling].shape} in {feat_time[pooling]:.0f}s", flush=True)

    picks = selections(pool, feats, probe_feats, weights, args.n, seeds)
    groups = {"pool": list(range(len(pool)))} | {f"{m}@{s}": idx for (m, s), (idx, _) in picks.items()}
    t = time.time()
    acc, tokens = hessians(model, pool, groups, blocks, args.batch_size)
    print(f"hessians of {len(blocks) * len(LINEARS)} linears for {len(groups)} sets in {time.time() - t:.0f}s",
          flush=True)

    rows, t = [], time.time()
    linears = sorted({k for _, k in acc}, key=lambda k: (int(k.split(".")[0]), k))
    for key in linears:
        h_p = acc[("pool", key)] / tokens["pool"]
        evals = torch.linalg.eigvalsh(h_p)
        damp = 0.01 * torch.diag(h_p).mean()
        h_p_inv = torch.linalg.inv(h_p + damp * torch.eye(h_p.shape[0], dtype=h_p.dtype))
        best = float(evals[-args.topk:].sum() / evals.sum())  # the pool's own top-k: the ceiling
        for (method, seed), _ in picks.items():
            g = f"{method}@{seed}"
            m = metrics(acc[(g, key)] / tokens[g], h_p, h_p_inv, args.topk)
            rows.append({"linear": key, "method": method, "seed": seed, **m, "topk_ceiling": best})

    print(f"metrics in {time.time() - t:.0f}s", flush=True)
    methods = list(dict.fromkeys(m for m, _ in picks))
    summary = {}
    print(f"\nper method, mean +- std over seeds {seeds} of the mean over {len(linears)} linears "
          f"(blocks {blocks}: {', '.join(LINEARS)})")
    print(f"{'method':<16}{'rel_fro':>18}{'whitened':>18}{'topk_cov':>18}")
    for method in methods:
        per_seed = {metric: [np.mean([r[metric] for r in rows if r["method"] == method and r["seed"] == s])
                             for s in seeds] for metric in ("rel_fro", "whitened", "topk_cov")}
        summary[method] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_seed": v}
                           for k, v in per_seed.items()}
        print(f"{method:<16}" + "".join(f"{np.mean(v):>11.4f} +- {np.std(v):.4f}" for v in per_seed.values()))
    print(f"\nper linear (mean over seeds), rel_fro:")
    print(f"{'linear':<22}" + "".join(f"{m:>15}" for m in methods))
    for key in linears:
        print(f"{key:<22}" + "".join(
            f"{np.mean([r['rel_fro'] for r in rows if r['linear'] == key and r['method'] == m]):>15.4f}"
            for m in methods))

    mix = {f"{m}@{s}": dict(sorted(Counter(pool[i].source for i in idx).items()))
           for (m, s), (idx, _) in picks.items() if s == seeds[0]}
    print("\nsource mix (seed %d):" % seeds[0])
    for g, c in mix.items():
        print(f"  {g:<18} {c}")

    for seed in [int(s) for s in args.save_sets.split(",") if s.strip()]:
        for pooling in ("mean", "moments"):
            idx, info = picks[(f"cola-{pooling}", seed)]
            sel = SimpleNamespace(clusters=None, distances=None, scores=None)
            samples = [_sample(pool[i], sel, k) for k, i in enumerate(idx)]
            manifest = {"model": args.model, "tokenizer_hash": tokenizer_hash(tok), "method": "cola",
                        "method_params": {}, "selection_info": {"shares": info.get("shares")}, "seed": seed,
                        "seq_len": args.seq_len, "format": "plain", "packing": "pack",
                        "pool_per_source": args.per_source, "pool_size": len(pool), "sources": provenance,
                        "features": {"pooling": pooling}, "compression": "gptq", "target": "general",
                        "bench": "bench/hessian_proxy.py (one pool for every seed)"}
            CalibrationSet(samples, manifest).save(args.out / f"cola-{pooling}-s{seed}", overwrite=True)

    result = {"args": {k: str(v) for k, v in vars(args).items()}, "pool": len(pool), "feature_seconds": feat_time,
              "summary": summary, "rows": rows, "source_mix": mix, "wall_seconds": time.time() - t0}
    (args.out / "hessian_proxy.json").write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out / 'hessian_proxy.json'} [{time.time() - t0:.0f}s]")


if __name__ == "__main__":
    main()
