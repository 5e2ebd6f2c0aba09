"""The Selector interface and the registry of curation methods."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from colakit.errors import ColakitError

if TYPE_CHECKING:
    from colakit.curate.process import Candidate


@dataclass
class Selection:
    """What a selector chose: candidate indices in selection order, with optional per-pick data."""

    indices: list[int]
    scores: list[float] | None = None
    clusters: list[int] | None = None
    distances: list[float] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # generating methods return new candidates; ``indices`` then refer to this list, not the pool
    generated: list[Candidate] | None = None


class Selector:
    """Base class: subclasses set ``name`` and implement ``select``."""

    name: ClassVar[str] = ""
    needs_features: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False  # curate() loads the model once and calls ``bind`` before ``select``
    needs_pool: ClassVar[bool] = True  # False: the method makes its own text (no sources read, no pool budget)

    def params(self) -> dict[str, Any]:
        """Parameters recorded in the CalibrationSet manifest."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def bind(self, model, tokenizer, config) -> None:
        """Give a model-based method the model, its tokenizer and the CurateConfig (seq_len, ...)."""
        self._model, self._tokenizer, self._config = model, tokenizer, config

    def bound(self):
        """(model, tokenizer, config) from ``bind``, or a clear error when it was never called."""
        if getattr(self, "_model", None) is None:
            raise ColakitError(f"method {self.name!r} needs a model and none was bound",
                               "call selector.bind(model, tokenizer, config) before select(), or use curate()")
        return self._model, self._tokenizer, self._config

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
