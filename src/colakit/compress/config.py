"""What to compress and how: one dataclass, validated against the model before any weight moves."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

from torch import nn

from colakit.errors import ColakitError
from colakit.model.layers import find_decoder, in_features

PRUNING = ("sparsegpt", "wanda", "magnitude")
QUANTIZATION = ("gptq", "awq", "rtn")
METHODS = PRUNING + QUANTIZATION
NEEDS_DATA = ("sparsegpt", "wanda", "gptq", "awq")
VALUE_HESSIANS = ("attention", "tokens")
AUTO = "auto"
AUTO_GROUP_SIZES = (128, 64, 32)  # 128 is the field's usual choice; smaller models need smaller groups


@dataclass
class CompressionConfig:
    """Parameters of one compression run.

    Pruning methods use ``sparsity`` (unstructured) or ``pattern="N:M"`` (keep N of every M
    consecutive input weights per row; 2:4 prunes half). Quantization methods use ``bits``,
    ``group_size`` (-1: one group per row; ``"auto"``: the largest of 128/64/32 that divides every
    quantized linear's input features, fixed by ``resolve(model)``) and ``sym``. SparseGPT with ``bits`` quantizes jointly
    with pruning; Wanda/magnitude with ``bits`` round the kept weights to nearest afterwards.
    """

    method: str
    sparsity: float = 0.5
    pattern: str = "unstructured"
    bits: int | None = None
    group_size: int | str = 128
    sym: bool = False
    act_order: bool = False
    damp: float = 0.01
    value_hessian: str = "attention"  # GPTQ/SparseGPT: "attention" (see compress/attention.py) or "tokens"
    block_size: int = 128
    batch_size: int = 8
    awq_grid: int = 20
    awq_clip: bool = True
    awq_max_shrink: float = 0.5
    awq_clip_tokens: int = 512
    awq_search_tokens: int | None = 8192  # scale search scores on the first batches holding this many tokens
    keep_backup: bool = True

    def __post_init__(self):
        if self.bits is None and self.method in QUANTIZATION:
            self.bits = 4

    @property
    def prunes(self) -> bool:
        return self.method in PRUNING

    @property
    def quantizes(self) -> bool:
        return self.bits is not None

    @property
    def nm(self) -> tuple[int, int] | None:
        """(keep N, of M) for an N:M pattern, else None."""
        if self.pattern == "unstructured":
            return None
        n, m = (int(p) for p in self.pattern.split(":"))
        return n, m

    @property
    def target_sparsity(self) -> float:
        nm = self.nm
        return 1 - nm[0] / nm[1] if nm else self.sparsity

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("keep_backup")
        return out

    def validate(self) -> None:
        """Check the parameters on their own (``validate_for`` also checks them against a model)."""
        if self.method not in METHODS:
            raise ColakitError(f"unknown compression method {self.method!r}", f"use one of: {', '.join(METHODS)}")
        if self.prunes:
            self._validate_pattern()
            if self.nm is None and not (0 < self.sparsity < 1):
                raise ColakitError(f"sparsity {self.sparsity} is outside (0, 1)",
                                   "give the fraction of weights to remove, e.g. --sparsity 0.5")
        if self.bits is not None and (not isinstance(self.bits, int) or not 2 <= self.bits <= 8):
            raise ColakitError(f"bits {self.bits} is outside 2-8", "use --bits 2 to 8 (4 is the usual choice)")
        if self.bits is not None and self.method in ("gptq", "awq", "rtn") and self.pattern != "unstructured":
            raise ColakitError(f"--pattern {self.pattern} applies to pruning, not {self.method}",
                               "use --method sparsegpt/wanda/magnitude for N:M sparsity")
        if self.group_size not in (-1, AUTO) and (not isinstance(self.group_size, int) or self.group_size < 1):
            raise ColakitError(f"group size {self.group_size} is not a positive integer",
                               "use e.g. --group-size 64, auto, or -1 for one group per output row")
        if self.value_hessian not in VALUE_HESSIANS:
            raise ColakitError(f"value_hessian {self.value_hessian!r} is not one of {', '.join(VALUE_HESSIANS)}",
                               "use attention (weight value inputs by how much they are attended to) or tokens")
        if not self.damp > 0:
            raise ColakitError(f"dampening {self.damp} must be > 0", "use e.g. 0.01 (1% of the mean Hessian diagonal)")
        for name in ("block_size", "batch_size", "awq_grid", "awq_clip_tokens", "awq_search_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ColakitError(f"{name} {getattr(self, name)} must be >= 1", f"set {name} to a positive integer")
        if not 0 <= self.awq_max_shrink < 1:
            raise ColakitError(f"awq_max_shrink {self.awq_max_shrink} is outside [0, 1)", "use e.g. 0.5")

    def _validate_pattern(self) -> None:
        if self.pattern == "unstructured":
            return
        parts = self.pattern.split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ColakitError(f"pattern {self.pattern!r} is neither 'unstructured' nor N:M",
                               "use --pattern unstructured, 2:4 or 4:8")
        n, m = int(parts[0]), int(parts[1])
        if not 0 < n < m:
            raise ColakitError(f"pattern {self.pattern}: N must be between 1 and M-1 (N={n}, M={m})",
                               "N:M keeps N of every M weights, e.g. --pattern 2:4")

    def resolve(self, model: nn.Module) -> CompressionConfig:
        """This config with ``group_size="auto"`` replaced by the size chosen for ``model`` (quantizing runs only)."""
        if self.group_size != AUTO or not self.quantizes:
            return self
        return dataclasses.replace(self, group_size=auto_group_size(model))

    def validate_for(self, model: nn.Module) -> None:
        """Validate, then check every linear that will be touched can take these settings."""
        self.validate()
        if self.quantizes and self.group_size == AUTO:
            auto_group_size(model)  # raises when no automatic size fits
        layout = find_decoder(model)
        for i in range(layout.num_layers):
            for name, lin in layout.linears(i).items():
                cols = in_features(lin)
                where = f"{layout.layers_path}.{i}.{name}"
                if self.quantizes and self.group_size not in (-1, AUTO) and cols % self.group_size:
                    raise ColakitError(
                        f"group size {self.group_size} does not divide the {cols} input features of {where}",
                        f"use a group size that divides every layer's input features "
                        f"(e.g. --group-size {suggest_group_size(model)}), or -1 for one group per row")
                nm = self.nm
                if self.prunes and nm and cols % nm[1]:
                    raise ColakitError(f"pattern {self.pattern}: M={nm[1]} does not divide the {cols} "
                                       f"input features of {where}", "use an M that divides the input features")


def _common_in_features(model: nn.Module) -> int:
    layout = find_decoder(model)
    common = 0
    for i in range(layout.num_layers):
        for lin in layout.linears(i).values():
            common = math.gcd(common, in_features(lin))
    return common


def auto_group_size(model: nn.Module) -> int:
    """The largest of ``AUTO_GROUP_SIZES`` that divides every decoder linear's input features."""
    common = _common_in_features(model)
    for size in AUTO_GROUP_SIZES:
        if common % size == 0:
            return size
    raise ColakitError(f"--group-size auto: none of {'/'.join(map(str, AUTO_GROUP_SIZES))} divides the input "
                       f"features of every decoder linear (their common divisor is {common})",
                       f"pass --group-size {suggest_group_size(model)} or -1 (one group per output row)")


def suggest_group_size(model: nn.Module) -> int:
    """The largest of 128, 64, 32, ... that divides every decoder linear's input features."""
    common = _common_in_features(model)
    size = 128
    while size > 1 and common % size:
        size //= 2
    return size
