"""Curate a calibration set with COLA, then compress with llm-compressor's `oneshot` (GPTQ, 4-bit).

    pip install "colakit[llmcompressor]"
    python examples/cola_oneshot.py --out runs/cola-oneshot

colakit picks the calibration samples; llm-compressor does the compression and writes the
compressed-tensors checkpoint vLLM loads. The budgets are tiny so the script runs in minutes on a
laptop CPU: for a real run use --n 128 --seq-len 2048 (the GPTQ paper's budget, what
`colakit curate --compression gptq` picks), drop --pool, and let the features use every layer
(FeatureConfig() instead of layers="0,3,6", which stops each forward after layer 6).
"""

import argparse
import json
from pathlib import Path

from colakit.calibset import CalibrationSet
from colakit.curate.features import FeatureConfig
from colakit.curate.pipeline import CurateConfig, curate
from colakit.evaluate import compare, evaluate_model
from colakit.model.load import ModelHandle

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--out", default="runs/cola-oneshot")
p.add_argument("--n", type=int, default=8, help="calibration samples")
p.add_argument("--seq-len", type=int, default=64, help="tokens per sample")
p.add_argument("--pool", type=int, default=8, help="candidate windows per source (colakit's default: max(8n, 256))")
args = p.parse_args()
out = Path(args.out)

try:
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier
except ImportError:
    raise SystemExit('this example needs llm-compressor: pip install "colakit[llmcompressor]"')

# 1. COLA over the default sources (c4, wiki, code, math, commonsense, multilingual), general target.
calib = curate(CurateConfig(model="smollm2-135m", method="cola", n=args.n, seq_len=args.seq_len, seed=0,
                            pool_per_source=args.pool, probes_per_capability=4,
                            features=FeatureConfig(layers="0,3,6")),
               out=out / "calib", overwrite=True)
print(f"curated {len(calib)} samples, {calib.num_tokens} tokens -> {out / 'calib'}")
print("source mix:", calib.summary()["sources"])

# 2. llm-compressor's oneshot on the same samples. SmolLM2's hidden size (576) is not a multiple
#    of 128, so the 4-bit groups are 64 wide (colakit's --group-size auto picks the same).
handle = ModelHandle("smollm2-135m", device="cpu", dtype="float32")
model, tokenizer = handle.model, handle.tokenizer
recipe = GPTQModifier(ignore=["lm_head"], config_groups={"group_0": {
    "targets": ["Linear"],
    "weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 64}}})
calib = CalibrationSet.load(out / "calib")  # what you would do in another process
oneshot(model=model, tokenizer=tokenizer, recipe=recipe, dataset=calib.to_dataset(),
        num_calibration_samples=len(calib), max_seq_length=args.seq_len, shuffle_calibration_samples=False)
model.save_pretrained(out / "gptq-w4", save_compressed=True)
tokenizer.save_pretrained(out / "gptq-w4")
print(f"compressed checkpoint -> {out / 'gptq-w4'}")

# 3. What it kept: held-out wiki perplexity against the dense model (retention 1.0 = nothing lost).
tasks = "ppl_wiki:4"
dense = evaluate_model("smollm2-135m", tasks, seed=0)
comp = evaluate_model(out / "gptq-w4", tasks, seed=0)
retention = compare(comp, dense)
(out / "retention.json").write_text(json.dumps(retention, indent=2, default=str))
for task, r in retention["tasks"].items():
    d, c = (res["tasks"][task] for res in (dense, comp))
    metric = d["primary"]
    print(f"{task} {metric}: dense {d['metrics'][metric]:.2f}, compressed {c['metrics'][metric]:.2f}, "
          f"retention {r['retention']:.3f}")
