"""Bring your own data: a JSONL file of your documents as a calibration source, beside a named one.

    python examples/own_data.py --out runs/own-data

Here "your data" is this repository's own docs (docs/*.md, one JSON line per paragraph), standing in
for the text a deployed model will see: support tickets, internal docs, chat logs. The script writes
the JSONL, shows how colakit reads it (`colakit sources show`), curates a set that is half your data
and half C4 (`--method mix-uniform`, model-free and fast), and checks it against every evaluation set.
The same spec works in every --sources and in a grid config's `sources:` list.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLAKIT = [sys.executable, "-m", "colakit"]

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--out", default="runs/own-data")
p.add_argument("--n", type=int, default=16, help="calibration samples")
p.add_argument("--seq-len", type=int, default=128, help="tokens per sample")
args = p.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# 1. Your data as JSONL: one document per line, the text in a field of your choosing ("body" here).
rows = []
for page in sorted((ROOT / "docs").rglob("*.md")):
    for para in page.read_text().split("\n\n"):
        if len(para.split()) >= 20 and not para.lstrip().startswith(("|", "```", "<")):
            rows.append({"id": f"{page.name}:{len(rows)}", "body": para.strip()})
data = out / "my_docs.jsonl"
data.write_text("".join(json.dumps(r) + "\n" for r in rows))
print(f"wrote {len(rows)} documents to {data}")

# 2. How colakit reads it: ?field= names the text field; the held-out split is printed too.
spec = f"{data}?field=body"


def colakit(*argv):
    print("$ colakit", " ".join(argv), flush=True)
    subprocess.run([*COLAKIT, *argv], check=True)


colakit("sources", "show", spec)

# 3. Curate: an equal share of your documents and C4 windows (--method cola gives COLA's
#    activation-space selection over the same two sources). The spec with options goes last.
calib = out / "calib"
colakit("curate", "--sources", f"c4,{spec}", "--method", "mix-uniform", "--n", str(args.n),
        "--seq-len", str(args.seq_len), "--overwrite", "--out", str(calib))
colakit("inspect", str(calib))

# 4. Contamination: exit 1 if any calibration text overlaps an evaluation set.
colakit("check-overlap", str(calib))
print(f"calibration set: {calib}")
