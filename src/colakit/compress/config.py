"""What to compress and how: a method with its parameters, plus the engine's own settings.

``CompressionConfig("gptq", bits=4, group_size=64)`` looks the method up by name and gives it the
keys; a key the method does not take is refused, naming the keys it does take. Everything is
validated against the model before any weight moves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from colakit.compress.methods import METHODS, Method, ParameterError, get_method
from colakit.errors import ColakitError

# compression.json's "config": the keys (and, for the keys a method does not take, the values) that
# every report has carried since the config was one flat dataclass; other code and resumed grids read
# them. A method's own further keys follow these.
REPORT_SCHEMA = {"method": None, "sparsity": 0.5, "pattern": "unstructured", "bits": None, "group_size": 128,
                 "sym": False, "act_order": False, "damp": 0.01, "value_hessian": "attention", "block_size": 128,
                 "batch_size": 8, "awq_grid": 20, "awq_clip": True, "awq_max_shrink": 0.5, "awq_clip_tokens": 512,
                 "awq_search_tokens": 8192}


def config_keys() -> tuple[str, ...]:
    """Every key a config may set for some registered method (``keep_backup`` is for API callers only)."""
    keys = ["method", "batch_size"]
    for cls in METHODS.values():
        keys += [k for k in cls.parameters() if k not in keys]
    return tuple(keys)


@dataclass(init=False)
class CompressionConfig:
    """Parameters of one compression run: ``method`` (a registered name, with its keys, or a
    ``Method``), ``batch_size`` (calibration samples per forward) and ``keep_backup`` (restore the
    model if the run fails part-way)."""

    method: Method
    batch_size: int = 8
    keep_backup: bool = True

    def __init__(self, method: str | Method, batch_size: int = 8, keep_backup: bool = True, **params):
        if isinstance(method, str):
            cls = get_method(method)
            for key in params:
                if key not in cls.parameters():
                    raise ParameterError(cls, key, (*cls.parameters(), "batch_size"))
            method = cls(**params)
        elif params:
            raise TypeError(f"parameters {', '.join(params)} go to the method, e.g. {type(method).__name__}(...)")
        self.method, self.batch_size, self.keep_backup = method, batch_size, keep_backup

    def to_dict(self) -> dict:
        """What compression.json records as the run's config."""
        own = {"method": self.method.name, **self.method.to_dict(), "batch_size": self.batch_size}
        return {**{k: own.get(k, v) for k, v in REPORT_SCHEMA.items()}, **own}

    def validate(self) -> None:
        """Check the parameters on their own (``validate_for`` also checks them against a model)."""
        if not isinstance(self.method, Method):
            raise ColakitError(f"{self.method!r} is not a compression method", f"use one of: {', '.join(METHODS)}")
        self.method.validate()
        if self.batch_size < 1:
            raise ColakitError(f"batch_size {self.batch_size} must be >= 1", "set batch_size to a positive integer")

    def validate_for(self, model: nn.Module) -> None:
        """Validate, then check every linear that will be touched can take these settings."""
        self.validate()
        self.method.check_model(model)

    def resolve(self, model: nn.Module, notes: list[str] | None = None) -> CompressionConfig:
        """This config with the model-dependent choices made (``group_size="auto"``), each noted in ``notes``."""
        return dataclasses.replace(self, method=self.method.resolve(model, [] if notes is None else notes))
