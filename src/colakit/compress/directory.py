"""A compressed model directory's own files: the report beside the weights, and no overwriting.

Both backends write through here (the built-in one in ``output``, llm-compressor's in
``llmcompressor_backend``).
"""

from __future__ import annotations

import json
from pathlib import Path

from colakit.errors import ColakitError

REPORT_FILE = "compression.json"


def refuse_existing(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists():
        raise ColakitError(f"output directory {out} already exists", "choose another --out or delete it first")
    return out


def write_report(directory: Path, report: dict) -> None:
    (directory / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str) + "\n")
