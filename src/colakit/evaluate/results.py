"""results.json: writing (atomic), reading, and the per-task checkpoints that make a run resumable.

A finished task is written to ``<out>.parts/<task>.json`` with a fingerprint of everything that
decides its numbers (model hash, task version, item ids, settings). A rerun with the same
fingerprint reuses it instead of recomputing; anything else recomputes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from colakit.cache import write_json_atomic
from colakit.errors import ColakitError

SCHEMA = "colakit.evaluate/1"


def fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parts_dir(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + ".parts")


def load_part(out: Path | None, task: str, key: str) -> dict | None:
    if out is None:
        return None
    path = parts_dir(out) / f"{task}.json"
    if not path.exists():
        return None
    try:
        part = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a damaged checkpoint is recomputed
    return part["result"] if part.get("fingerprint") == key else None


def save_part(out: Path | None, task: str, key: str, result: dict) -> None:
    if out is not None:
        write_json_atomic(parts_dir(out) / f"{task}.json", {"fingerprint": key, "result": result})


def write_results(path: Path, results: dict) -> Path:
    write_json_atomic(Path(path), results)
    return Path(path)


def read_results(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ColakitError(f"results file {path} {'is a directory' if path.is_dir() else 'does not exist'}",
                           "pass a results.json written by `colakit evaluate`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ColakitError(f"{path} is not valid JSON ({getattr(err, 'msg', 'not UTF-8 text')})",
                           "pass a results.json written by `colakit evaluate`") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or "tasks" not in data:
        raise ColakitError(f"{path} is not a colakit evaluation result", "pass a results.json written by `colakit evaluate`")
    return data
