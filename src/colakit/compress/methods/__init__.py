"""The compression methods, one file per paper, found by name through a registry.

``base`` says what a method is (``Method``) and keeps the registry; ``params`` holds the
parameter groups that several methods share (``Pruning``, ``Quantization``, ``HessianSolve``).
Importing this package imports every other module in it, and each registers its method.

Adding a method takes one new file here (plus its tests) and nothing else:

    from dataclasses import dataclass

    from colakit.compress.hessian import HessianStats
    from colakit.compress.methods.base import register_method
    from colakit.compress.methods.params import Pruning

    @register_method
    @dataclass
    class MyPrune(Pruning):                     # takes sparsity/pattern, with their checks
        name = "myprune"
        strength: float = 1.0                   # its own keys, with defaults ...

        def validate(self):                     # ... and their checks
            super().validate()
            ...

        def make_stats(self, columns, device):  # what to gather per linear: ``add_batch(x)``
            return HessianStats(columns, device)

        def solve(self, stats, w, what):        # the new weight, and facts for the report
            return new_w, {}

``CompressionConfig("myprune", sparsity=0.6, strength=2.0)``, a grid's ``compression:`` block
and compression.json then take it like a built-in, and so does ``colakit compress --method
myprune --sparsity 0.6 -p strength=2`` (options for the shared keys, ``--param`` for its own).
A block-level method overrides ``compress_block`` instead (see ``awq``); one with an
llm-compressor equivalent returns it from ``llmcompressor_recipe``. A method defined elsewhere
registers the same way, when its module is imported.
"""

from colakit.compress.methods.base import METHODS, Method, ParameterError, RecipeStep, get_method, register_method
from colakit.compress.methods.params import (AUTO, HessianSolve, Pruning, Quantization, auto_group_size,
                                             suggest_group_size)

from colakit.plugins import import_all

import_all(__name__, __path__, skip=("base", "params"))

__all__ = ["AUTO", "METHODS", "HessianSolve", "Method", "ParameterError", "Pruning", "Quantization", "RecipeStep",
           "auto_group_size", "get_method", "register_method", "suggest_group_size"]
