import pytest
import torch
from torch import nn

from colakit.errors import ColakitError
from colakit.model.layers import find_decoder, weight_matrix
from tiny_models import tiny_model


def test_find_decoder_every_family(family):
    model = tiny_model(family)
    layout = find_decoder(model)
    assert layout.num_layers == 2
    assert layout.final_norm is not None
    spec = layout.spec(0)
    assert spec.attn_norm and spec.attn_in and spec.attn_out
    assert spec.mlp_norm and spec.mlp_in and spec.mlp_out
    for name in (*spec.attn_in, spec.attn_out, *spec.mlp_in, spec.mlp_out):
        assert name in spec.linears
    # every linear of the block has an [out, in] weight whose in-dim matches its input
    for name, lin in layout.linears(0).items():
        w = weight_matrix(lin)
        x = torch.randn(3, w.shape[1])
        assert lin(x).shape[-1] == w.shape[0], name


def test_gemma_mlp_norm_is_the_pre_feedforward_norm():
    spec = find_decoder(tiny_model("gemma2")).spec(0)
    assert spec.mlp_norm == "pre_feedforward_layernorm"


def test_unsupported_model_names_class_and_paths():
    class NoLayers(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 2, 1)

    with pytest.raises(ColakitError) as err:
        find_decoder(NoLayers())
    assert "NoLayers" in str(err.value) and "model.layers" in str(err.value)


def test_generic_fallback_finds_unusual_path():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.stack = nn.ModuleList([Block() for _ in range(3)])

    layout = find_decoder(Odd())
    assert layout.layers_path == "stack" and layout.num_layers == 3
