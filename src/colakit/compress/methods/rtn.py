"""Round-to-nearest quantization, the data-free baseline: each group on its own min/max grid
(``quantizer.quantize_groups``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from colakit.compress.methods.base import register_method
from colakit.compress.methods.params import Quantization


@register_method
@dataclass
class RTN(Quantization):
    """Round every weight to nearest; needs no calibration data (with data, the report has block errors)."""

    name = "rtn"
    needs_data = False

    def solve(self, stats: None, w: torch.Tensor, what: str) -> tuple[torch.Tensor, dict]:
        return self.round_to_grid(w)
