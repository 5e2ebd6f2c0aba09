"""The llm-compressor backend: recipes, clear errors, and one tiny oneshot run when the extra is installed."""

import builtins
import sys

import pytest

from colakit.compress import CompressionConfig
from colakit.compress.llmcompressor_backend import build_recipe
from colakit.errors import ColakitError


def test_missing_package_names_the_install_command(monkeypatch):
    real_import = builtins.__import__

    def no_llmcompressor(name, *a, **k):
        if name.startswith("llmcompressor"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.delitem(sys.modules, "llmcompressor", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_llmcompressor)
    with pytest.raises(ColakitError, match="pip install"):
        build_recipe(CompressionConfig("wanda"))


def test_awq_on_cpu_points_to_the_builtin_backend():
    import torch

    if torch.cuda.is_available():
        pytest.skip("an accelerator is present")
    with pytest.raises(ColakitError, match="--backend builtin"):
        build_recipe(CompressionConfig("awq", group_size=64))


def test_recipes_match_the_config():
    pytest.importorskip("llmcompressor")
    (sgpt,) = build_recipe(CompressionConfig("sparsegpt", pattern="2:4", damp=0.02))
    assert type(sgpt).__name__ == "SparseGPTModifier" and sgpt.mask_structure == "2:4" and sgpt.dampening_frac == 0.02
    (wanda,) = build_recipe(CompressionConfig("wanda", sparsity=0.6))
    assert wanda.sparsity == 0.6 and wanda.mask_structure == "0:0"
    (gptq,) = build_recipe(CompressionConfig("gptq", bits=3, group_size=64, sym=True))
    weights = gptq.config_groups["group_0"].weights
    assert (weights.num_bits, weights.group_size, weights.symmetric) == (3, 64, True)
    joint = build_recipe(CompressionConfig("sparsegpt", bits=4, group_size=32))
    assert [type(m).__name__ for m in joint] == ["SparseGPTModifier", "GPTQModifier"]
