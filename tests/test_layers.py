import pytest
import torch
from torch import nn

from colakit.errors import ColakitError
from colakit.model.hooks import linear_input_hook
from colakit.model.layers import INPUT_SITES, find_decoder, weight_matrix
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


def test_input_sites_group_the_linears_by_shared_input_or_name_what_is_missing(family):
    layout = find_decoder(tiny_model(family))
    sites = layout.input_sites(0, "the fix")
    assert tuple(sites) == INPUT_SITES and all(sites.values())
    assert sorted(n for names in sites.values() for n in names) == sorted(layout.linears(0))

    class Block(nn.Module):  # an MLP-only block: no attention linears
        def __init__(self):
            super().__init__()
            self.mlp = nn.Module()
            self.mlp.up_proj, self.mlp.down_proj = nn.Linear(4, 8), nn.Linear(8, 4)

    class MlpOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.stack = nn.ModuleList([Block()])

    with pytest.raises(ColakitError) as err:
        find_decoder(MlpOnly()).input_sites(0, "the fix")
    assert "attn_in, attn_out, mlp_in" in str(err.value) and "the fix" in str(err.value)


def test_linear_input_hook_lines_flattened_inputs_up_with_the_tokens():
    mask = torch.ones(2, 3, dtype=torch.bool)
    got = []
    lin = nn.Linear(4, 4)
    lin.register_forward_pre_hook(linear_input_hook(mask, got.append, "the fix"))
    lin(torch.randn(6, 4))  # OPT's MLP sees [B*T, C]
    assert got[0].shape == (2, 3, 4)
    with pytest.raises(ColakitError) as err:
        lin(torch.randn(5, 4))
    assert "(5, 4)" in str(err.value) and "the fix" in str(err.value)
