"""Why token-Hessian GPTQ loses to round-to-nearest on the default model: the attention sink.

Two measurements on SmolLM2-135M, using the data of ``bench/compress_parity.py --suite quality``
(its work directory must exist: 32 x 512 C4 calibration windows, 16 x 512 held-out wiki windows):

1. ``--part positions``: for the value projection of some blocks, the relative output error of
   RTN and of token-Hessian GPTQ (w4 g64, solved on the dense model's inputs for 16 calibration
   windows) on 8 held-out C4 windows, split by position: the first token of each window (where
   decoders park their attention), positions 1-3, the rest.
2. ``--part swap``: held-out wiki perplexity of the token-GPTQ model (from compress_parity's run
   directory) with one kind of linear replaced by its RTN weights, for each kind.

    python bench/value_hessian.py --part positions --blocks 1,5,15,29
    python bench/value_hessian.py --part swap --bits 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from compress_parity import SEQ, load_output, perplexity  # noqa: E402

KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def windows(tok, source: str, split: str, n: int) -> torch.Tensor:
    from colakit.data.sources import get_source

    text = tok.eos_token.join(d.text for d in get_source(source).documents(split))
    ids = tok(text, add_special_tokens=False)["input_ids"][: n * SEQ]
    return torch.tensor(ids).reshape(n, SEQ)


def value_inputs(model, ids: torch.Tensor, blocks: list[int]) -> dict[int, torch.Tensor]:
    """The dense model's inputs of ``v_proj`` in ``blocks``: ``[windows, SEQ, hidden]`` each."""
    store: dict[int, list] = {b: [] for b in blocks}
    hooks = [model.model.layers[b].self_attn.v_proj.register_forward_pre_hook(
        lambda _m, inp, b=b: store[b].append(inp[0])) for b in blocks]
    with torch.no_grad():
        for chunk in ids.split(4):
            model(chunk)
    for h in hooks:
        h.remove()
    return {b: torch.cat(v) for b, v in store.items()}


def positions(blocks: list[int], bits: int) -> None:
    from colakit.compress.methods.gptq import GPTQSolver as GPTQ
    from colakit.compress.quantizer import quantize_groups as rtn
    from colakit.model.load import DEFAULT_MODEL, load_model, load_tokenizer

    tok, model = load_tokenizer(DEFAULT_MODEL), load_model(DEFAULT_MODEL, device="cpu")
    calib = value_inputs(model, windows(tok, "c4", "calibration", 16), blocks)
    held = value_inputs(model, windows(tok, "c4", "heldout", 8), blocks)
    print(f"v_proj relative output error per token on held-out C4, w{bits} g64 (mean over windows)")
    for b in blocks:
        w = model.model.layers[b].self_attn.v_proj.weight.data.float()
        solver = GPTQ(w.shape[1], torch.device("cpu"))
        solver.add_batch(calib[b])
        variants = {"rtn": rtn(w, bits, 64, False), "gptq-tokens": solver.solve(w.clone(), bits, 64, False)[0]}
        for name, q in variants.items():
            x = held[b]
            err = (x @ (w - q).T).pow(2).sum(-1) / (x @ w.T).pow(2).sum(-1)  # [windows, SEQ]
            print(f"block {b:2d} {name:12s} position 0 {err[:, 0].mean():.4f}   1-3 {err[:, 1:4].mean():.4f}   "
                  f"rest {err[:, 4:].mean():.4f}")


def swap(work: Path, bits: int) -> None:
    held = torch.load(work / "heldout.pt")
    rtn_sd = load_output(work / f"rtn-bits{bits}-group_size64-builtin").state_dict()
    model = load_output(work / f"gptq-bits{bits}-group_size64-value_hessiantokens-builtin")
    gptq_sd = {k: v.clone() for k, v in model.state_dict().items()}
    print(f"held-out wiki perplexity, token-Hessian GPTQ w{bits} g64 with one kind of linear from RTN")
    print(f"{'none (all GPTQ)':28s} {perplexity(model, held):.3f}")
    for kind in KINDS:
        model.load_state_dict({k: (rtn_sd[k] if kind in k else v) for k, v in gptq_sd.items()})
        print(f"{kind + ' from RTN':28s} {perplexity(model, held):.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["positions", "swap"], required=True)
    ap.add_argument("--blocks", default="1,5,15,29")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--work", type=Path, default=None, help="compress_parity's work directory (swap)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.part == "positions":
        positions([int(b) for b in args.blocks.split(",")], args.bits)
        return
    from colakit.cache import cache_dir

    swap(args.work or cache_dir() / "bench-compress" / "curated-c32-h16", args.bits)


if __name__ == "__main__":
    main()
