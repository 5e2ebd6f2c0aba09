"""Attention-aware value Hessians: the probe sees what eager attention computes, changes nothing,
and the solver then weights each value input by how much it is attended to."""

import pytest
import torch

from colakit.compress import CompressionConfig
from colakit.compress.attention import attention_probs, probe_attention, value_linear
from colakit.compress.engine import compress
from colakit.errors import ColakitError
from colakit.model.layers import block_linears, find_decoder
from tiny_models import FAMILIES, tiny_model


def _attention_of(model):
    return find_decoder(model).layers[0].self_attn


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2", "opt"])
def test_probe_matches_eager_weights_and_leaves_outputs_alone(family):
    model = tiny_model(family)
    ids = torch.randint(5, 100, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a padded row: its masked keys get no weight
    with torch.no_grad():
        plain = model(ids, attention_mask=mask).logits
        seen = []
        with probe_attention(_attention_of(model), seen.append) as active:
            probed = model(ids, attention_mask=mask).logits
        assert active and len(seen) == 1
        model.config._attn_implementation = "eager"  # eager attention returns its weights: the reference
        eager = model(ids, attention_mask=mask, output_attentions=True).attentions[0]
    real = mask.bool()  # padded positions may differ: the full model builds its mask per implementation
    assert torch.equal(plain[real], probed[real])
    probs = seen[0]
    assert probs.shape == eager.shape
    torch.testing.assert_close(probs[0], eager[0].float(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(probs[1, :, :9, :9], eager[1, :, :9, :9].float(), atol=1e-5, rtol=1e-4)
    assert torch.all(probs[1, :, :9, 9:] == 0)  # real queries never attend to padding
    assert torch.all(probs[0].triu(1) == 0)  # causal


@pytest.mark.parametrize("family", ["gemma2", "llama"])
def test_probe_of_an_eager_model_takes_its_own_weights(family):
    """A model loaded with eager attention keeps its own eager function (Gemma 2's softcapping)."""
    model = tiny_model(family)
    model.config._attn_implementation = "eager"
    ids = torch.randint(5, 100, (2, 10))
    with torch.no_grad():
        plain = model(ids, output_attentions=True)
        seen = []
        with probe_attention(_attention_of(model), seen.append) as active:
            probed = model(ids).logits
    assert active and len(seen) == 1
    assert torch.equal(plain.logits, probed)
    torch.testing.assert_close(seen[0], plain.attentions[0].float())


def test_attention_probs_default_mask_is_causal():
    q, k = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8)  # grouped-query: 2 kv heads for 4 query heads
    p = attention_probs(torch.nn.Module(), q, k, None, None)
    assert torch.all(p.triu(1) == 0)
    torch.testing.assert_close(p.sum(-1), torch.ones(1, 4, 5))


def test_value_linear_found_where_separate():
    for family in FAMILIES:
        names = block_linears(find_decoder(tiny_model(family)).layers[0])
        found = value_linear(names)
        assert found is None or found.endswith(("v_proj", "value"))
    assert value_linear(block_linears(find_decoder(tiny_model("llama")).layers[0])) == "self_attn.v_proj"


@pytest.mark.parametrize("method", ["gptq", "sparsegpt"])
def test_value_projection_solved_per_group_with_attention(method):
    ids = torch.randint(5, 100, (4, 24))
    extra = dict(bits=4, group_size=16) if method == "gptq" else dict(sparsity=0.5)
    reports = {}
    for mode in ("attention", "tokens"):
        model = tiny_model("llama")
        reports[mode] = compress(model, ids, None, CompressionConfig(method, value_hessian=mode, **extra))
        v = model.model.layers[0].self_attn.v_proj.weight
        if method == "sparsegpt":
            assert float((v == 0).float().mean()) == pytest.approx(0.5, abs=0.02)
        assert torch.isfinite(v).all()
    v_att = reports["attention"].blocks[0]["linears"]["self_attn.v_proj"]
    v_tok = reports["tokens"].blocks[0]["linears"]["self_attn.v_proj"]
    assert v_att["value_hessian"] == "attention" and "value_hessian" not in v_tok
    # other linears are solved the same way in both modes (block 0 sees identical inputs)
    assert reports["attention"].blocks[0]["linears"]["self_attn.q_proj"] == \
        reports["tokens"].blocks[0]["linears"]["self_attn.q_proj"]


def test_unknown_value_hessian_is_refused():
    with pytest.raises(ColakitError, match="value_hessian 'rows'.*attention, tokens"):
        CompressionConfig("gptq", value_hessian="rows").validate()
