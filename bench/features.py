"""Feature extraction throughput vs a plain full forward with logits, on the same batches.

    python bench/features.py [--n 64] [--seq-len 512] [--batch-size 8] [--model smollm2-135m]

Prints sequences/s for: (a) colakit's feature pass (hooks on every layer, masked pooling,
stop after the last hooked layer), (b) the same decoder layers with no hooks (base model, no
head), (c) a full forward with logits (what a naive implementation runs). Ratios: a/c (the
speed-up, target >= 1.2) and a/b (the cost of hooks and pooling). Runs alternate to share noise.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from colakit.curate.features import pooled_activations
from colakit.model.layers import find_decoder
from colakit.model.load import load_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = load_model(args.model)
    layers = list(range(find_decoder(model).num_layers))
    vocab = model.config.vocab_size
    batches = [torch.randint(3, vocab, (args.batch_size, args.seq_len)) for _ in range(args.n // args.batch_size)]
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.model

    def features():
        for ids in batches:
            pooled_activations(model, ids, torch.ones_like(ids), layers)

    def layers_only():
        for ids in batches:
            base(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)

    def full_logits():
        for ids in batches:
            model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits.float()

    runs = {"features": features, "layers_only": layers_only, "full_logits": full_logits}
    times = {k: [] for k in runs}
    with torch.no_grad():
        features()  # warm-up
        for _ in range(args.repeats):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    seqs = len(batches) * args.batch_size
    best = {k: min(v) for k, v in times.items()}
    print(f"model={args.model} sequences={seqs} seq_len={args.seq_len} batch={args.batch_size} "
          f"threads={torch.get_num_threads()}")
    for name, t in best.items():
        print(f"  {name:12s} {seqs / t:8.2f} seq/s  ({t:.2f} s, best of {args.repeats})")
    print(f"speed-up features / full forward with logits: {best['full_logits'] / best['features']:.2f}x")
    print(f"hook + pooling overhead vs bare layers:        {best['features'] / best['layers_only'] - 1:+.1%}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
