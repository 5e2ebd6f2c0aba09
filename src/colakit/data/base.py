"""``Document`` and ``Source``: the contract every calibration source (named or the user's own) keeps.

A ``Source`` streams ``Document(text, source, doc_id, fields)`` in a stable order and splits them
into a calibration part and a held-out part by a seeded hash of the document id
(``colakit.data.split``), so adding documents never moves old ones between parts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator

from colakit.data.split import SPLIT_METHOD, SPLITS, is_heldout
from colakit.errors import ColakitError


@dataclass(frozen=True)
class Document:
    text: str
    source: str
    doc_id: str
    # Q&A sources: {"question", "reasoning", "answer"}; chat data: {"messages": [...]}; None for plain text.
    fields: dict[str, Any] | None = field(default=None, compare=False)


class Source:
    """A pool of documents with a deterministic calibration/held-out split.

    Subclasses implement ``_documents()`` (every document, stable order) and ``_content_hashes()``
    (sha256 of everything the documents are read from); user sources also ``check(fmt)``.
    """

    user = False  # the user's own data (not a named source): its split is reported on stderr

    def __init__(self, name: str, description: str, origin: str, *, seed: int = 0, heldout_fraction: float = 0.1):
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ColakitError(f"seed must be an integer, got {seed!r}", "pass e.g. seed=0")
        if not 0.0 <= heldout_fraction < 1.0:
            raise ColakitError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}",
                               "use e.g. --heldout-fraction 0.1 (0 keeps every document for calibration)")
        self.name, self.description, self.origin = name, description, origin
        self.seed, self.heldout_fraction = seed, float(heldout_fraction)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, seed={self.seed}, heldout_fraction={self.heldout_fraction})"

    def _documents(self) -> Iterator[Document]:
        raise NotImplementedError

    def _content_hashes(self) -> list[str]:
        raise NotImplementedError

    def check(self, fmt: str = "plain") -> None:
        """Raise before any work when the source cannot give ``fmt`` documents (named sources always can)."""

    def is_heldout(self, doc_id: str) -> bool:
        return is_heldout(doc_id, self.seed, self.heldout_fraction)

    def documents(self, split: str = "calibration", tally: dict | None = None) -> Iterator[Document]:
        """Stream the documents of ``split`` ("calibration", "heldout" or "all"), in a stable order.

        ``tally``: filled with how many documents went to each part (the stream read to its end).
        """
        if split not in SPLITS:
            raise ColakitError(f"unknown split {split!r}", f"use one of {', '.join(SPLITS)}")
        count, parts = 0, {"calibration": 0, "heldout": 0}
        for doc in self._documents():
            held = self.is_heldout(doc.doc_id)
            parts["heldout" if held else "calibration"] += 1
            if split == "all" or held == (split == "heldout"):
                count += 1
                yield doc
        if tally is not None:
            tally.update(parts)
        if count == 0:
            total = parts["calibration"] + parts["heldout"]
            hint = ("check the input: it gives no non-empty documents" if total == 0 else
                    f"it has {total} document(s), all in the other part: use --heldout-fraction 0 (every document "
                    "for calibration) or put ?heldout=0 on this source's spec" if split == "calibration" else
                    f"it has {total} document(s), none held out: raise --heldout-fraction")
            raise ColakitError(f"source {self.name!r} has no documents in split {split!r} "
                               f"(heldout_fraction {self.heldout_fraction:g})", hint)

    def split_info(self) -> dict:
        return {"seed": self.seed, "heldout_fraction": self.heldout_fraction, "method": SPLIT_METHOD}

    def fingerprint(self) -> str:
        """sha256 over the underlying files and the split parameters (for provenance)."""
        h = hashlib.sha256()
        h.update(json.dumps({"source": self.name, **self.split_info()}, sort_keys=True).encode())
        for digest in self._content_hashes():
            h.update(digest.encode())
        return h.hexdigest()
