"""Capabilities: the one vocabulary that curation targets, evaluation tasks and reports share.

Evaluation and reports name a capability by its display name (``LM``, ``Math``); curation spells
the same capability in lower case (``--target math``, probe weights ``language=2``). Each
capability that curation can target says which calibration sources exercise it: its probe set is
drawn from their calibration parts (never from evaluation items).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Capability:
    name: str  # as evaluation tasks and reports print it
    key: str  # as curation targets and weights spell it
    sources: tuple[str, ...]  # calibration sources that exercise it; empty: curation has no probe set for it


_ALL = (
    Capability("LM", "language", ("c4", "wiki")),
    Capability("Commonsense", "commonsense", ("commonsense",)),
    Capability("Knowledge", "knowledge", ()),
    Capability("Math", "math", ("math",)),
    Capability("Code", "code", ("code",)),
    Capability("Multilingual", "multilingual", ("multilingual",)),
)

# Display names, in the order tables list them.
CAPABILITIES: tuple[str, ...] = tuple(c.name for c in _ALL)
# Curation: capability key -> the sources its probes come from.
CAPABILITY_SOURCES: dict[str, tuple[str, ...]] = {c.key: c.sources for c in _ALL if c.sources}
# Curation key -> display name (a targeted deployment's capability in the evaluation's words).
DISPLAY_NAME: dict[str, str] = {c.key: c.name for c in _ALL}
