"""The deterministic calibration/held-out split that sources and evaluation sets share.

A document is held out when a seeded hash of its id falls below ``heldout_fraction``: the split
depends on nothing but the id, so it is stable across runs, machines and document orders, and
the ``math`` evaluation task can hold out exactly what the ``math`` source holds out.
"""

from __future__ import annotations

import hashlib

SPLITS = ("calibration", "heldout", "all")
SPLIT_METHOD = "sha256(f'{seed}:{doc_id}') / 2**256 < heldout_fraction"


def is_heldout(doc_id: str, seed: int, heldout_fraction: float) -> bool:
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < heldout_fraction * 2**64
