"""The Selector interface and the registry of curation methods."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

from colakit.errors import ColakitError


@dataclass
class Selection:
    """What a selector chose: candidate indices in selection order, with optional per-pick data."""

    indices: list[int]
    scores: list[float] | None = None
    clusters: list[int] | None = None
    distances: list[float] | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Selector:
    """Base class: subclasses set ``name`` and implement ``select``."""

    name: ClassVar[str] = ""
    needs_features: ClassVar[bool] = False

    def params(self) -> dict[str, Any]:
        """Parameters recorded in the CalibrationSet manifest."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def select(self, candidates: Sequence, features, budget: int, seed: int) -> Selection:
        raise NotImplementedError

    @staticmethod
    def check_budget(candidates: Sequence, budget: int) -> None:
        if budget < 1:
            raise ColakitError(f"budget {budget} is not positive", "set --n to 1 or more")
        if budget > len(candidates):
            raise ColakitError(
                f"budget {budget} is larger than the pool of {len(candidates)} candidate windows",
                "lower --n, add sources, raise --pool, or use a shorter --seq-len",
            )


SELECTORS: dict[str, type[Selector]] = {}


def register(cls: type[Selector]) -> type[Selector]:
    SELECTORS[cls.name] = cls
    return cls


def get_selector(name: str, **params) -> Selector:
    if name not in SELECTORS:
        raise ColakitError(f"unknown curation method {name!r}", f"available: {', '.join(sorted(SELECTORS))}")
    try:
        return SELECTORS[name](**params)
    except TypeError as err:
        raise ColakitError(f"bad parameters for method {name!r}: {err}", "see `colakit curate --help`") from err
