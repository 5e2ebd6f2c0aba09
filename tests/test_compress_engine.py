"""The block-by-block engine on tiny random models of every family."""

import warnings

import pytest
import torch

from colakit.compress import CompressionConfig, compress
from colakit.compress.methods import gptq as gptq_module
from colakit.compress.methods.awq import _fold, scale_groups
from colakit.compress.runtime import capture_inputs, run_block
from colakit.errors import ColakitError
from colakit.model.layers import find_decoder, weight_matrix
from tiny_models import tiny_model


def calibration(n=4, length=24, vocab=256, seed=0):
    ids = torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    mask[3, 3:] = 0
    return ids, mask


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def pruned_linears(model):
    layout = find_decoder(model)
    return [weight_matrix(lin) for i in range(layout.num_layers) for lin in layout.linears(i).values()]


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
def test_pruning_every_family_exact_sparsity(family, method):
    model = tiny_model(family)
    ids, mask = calibration()
    report = compress(model, ids, mask, CompressionConfig(method, sparsity=0.5, batch_size=2))
    for w in pruned_linears(model):
        assert int((w == 0).sum()) == w.numel() // 2
    assert abs(report.sparsity - 0.5) < 1e-9
    assert torch.isfinite(model(ids, attention_mask=mask).logits).all()


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_quantization_every_family_grid_and_forward(family, method):
    model = tiny_model(family)
    ids, mask = calibration()
    report = compress(model, ids, mask, CompressionConfig(method, bits=3, group_size=16, batch_size=3))
    for w in pruned_linears(model):
        groups = w.reshape(w.shape[0], -1, 16)
        assert max(len(torch.unique(groups[r, g])) for r in range(w.shape[0]) for g in range(groups.shape[1])) <= 8
    assert all(b["rel_error"] is not None and b["rel_error"] < 1 for b in report.blocks)
    assert torch.isfinite(model(ids, attention_mask=mask).logits).all()


@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
def test_nm_pattern_on_model(pattern):
    model = tiny_model("qwen2")
    ids, mask = calibration()
    compress(model, ids, mask, CompressionConfig("sparsegpt", pattern=pattern))
    n, m = map(int, pattern.split(":"))
    for w in pruned_linears(model):
        assert ((w != 0).reshape(w.shape[0], -1, m).sum(-1) <= n).all()


def test_sparsegpt_beats_wanda_and_magnitude_block_error_and_joint_quantization_runs():
    ids, mask = calibration(n=8, length=32)
    errors = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        model = tiny_model("llama")
        report = compress(model, ids, mask, CompressionConfig(method, sparsity=0.5))
        errors[method] = report.blocks[0]["rel_error"]
    # random weights have no outlier features, so Wanda ~ magnitude here; the OBS update still wins
    assert errors["sparsegpt"] < 0.8 * min(errors["wanda"], errors["magnitude"])
    model = tiny_model("llama")
    report = compress(model, ids, mask, CompressionConfig("sparsegpt", sparsity=0.5, bits=4, group_size=32))
    assert report.sparsity >= 0.5 and all("rel_error" in r for r in report.linears.values())


def test_padding_never_contributes():
    ids, mask = calibration()
    garbage = ids.clone()
    garbage[mask == 0] = (garbage[mask == 0] + 17) % 256  # different tokens at padded positions only
    results = []
    for calib in (ids, garbage):
        model = tiny_model("llama")
        compress(model, calib, mask, CompressionConfig("gptq", bits=4, group_size=16))
        results.append(snapshot(model))
    for k in results[0]:
        assert torch.equal(results[0][k], results[1][k]), k


def test_same_inputs_same_weights():
    ids, mask = calibration()
    runs = []
    for _ in range(2):
        model = tiny_model("mistral")
        compress(model, ids, mask, CompressionConfig("awq", bits=4, group_size=16))
        runs.append(snapshot(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_each_block_is_calibrated_on_the_compressed_outputs_of_the_previous_one():
    model = tiny_model("llama")
    ids, mask = calibration()
    layout = find_decoder(model)
    seen = []
    original = layout.layers[1].forward
    layout.layers[1].forward = lambda *a, **k: (seen.append(a[0].clone()), original(*a, **k))[1]
    compress(model, ids, mask, CompressionConfig("wanda", sparsity=0.5, batch_size=4))
    del layout.layers[1].forward
    expected = run_block(layout.layers[0], 0, capture_inputs(model, layout.layers, ids, mask, 4, "cpu")[0])
    assert torch.allclose(seen[0], expected, atol=1e-6)


def test_linears_fed_one_tensor_share_their_statistics_which_equal_their_own():
    from colakit.compress.runtime import MaskState, input_hooks
    from colakit.model.layers import block_linears

    model = tiny_model("llama")
    ids, mask = calibration()
    layout = find_decoder(model)
    block, linears = layout.layers[0], block_linears(layout.layers[0])
    batch = capture_inputs(model, layout.layers, ids, mask, 4, "cpu")[0]
    state = MaskState()
    state.mask = batch.mask
    got = {False: {}, True: {}}
    for share in (False, True):
        with torch.no_grad(), input_hooks(linears, state, lambda n, x, s=share: got[s].setdefault(n, x.clone()),
                                          share_inputs=share) as shared:
            run_block(block, 0, batch)
        if share:
            assert shared == {"self_attn.k_proj": "self_attn.q_proj", "self_attn.v_proj": "self_attn.q_proj",
                              "mlp.up_proj": "mlp.gate_proj"}
    assert set(got[True]) == set(linears) - set(shared)
    for name, owner in shared.items():  # the statistics a sharer skipped are exactly its owner's
        assert torch.equal(got[False][name], got[True][owner])
    assert got[True]["self_attn.q_proj"].shape[0] == int(batch.mask.sum())  # padding rows left out


def test_a_linear_sharing_an_input_allocates_no_statistics_of_its_own(monkeypatch):
    """k, v and up read q's and gate's input: their Hessians would be copies, so none is made (an 8B block: 192 MiB)."""
    made = []
    original = gptq_module.GPTQ.make_stats

    def counting(self, columns, device):
        made.append(columns)
        return original(self, columns, device)

    monkeypatch.setattr(gptq_module.GPTQ, "make_stats", counting)
    model = tiny_model("llama")
    ids, mask = calibration()
    layout = find_decoder(model)
    config = CompressionConfig("gptq", bits=4, group_size=32, batch_size=2, value_hessian="tokens")
    reference = tiny_model("llama")
    compress(model, ids, mask, config)
    per_block = len(made) // layout.num_layers
    assert per_block == 4  # q (shared by k, v), o, gate (shared by up), down
    # and the result is what every linear gathering its own statistics gives
    from colakit.compress import runtime

    hooks = runtime.input_hooks
    monkeypatch.setattr(runtime, "input_hooks", lambda modules, state, sink, share_inputs: hooks(modules, state, sink))
    compress(reference, ids, mask, config)
    assert len(made) == layout.num_layers * (4 + 7)
    for a, b in zip(pruned_linears(model), pruned_linears(reference)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bad,needle", [
    (dict(method="gptq", bits=4, group_size=48), "--group-size 32"),
    (dict(method="sparsegpt", sparsity=0.0), "outside (0, 1)"),
    (dict(method="wanda", sparsity=1.0), "outside (0, 1)"),
    (dict(method="sparsegpt", pattern="4:4"), "N must be between"),
    (dict(method="sparsegpt", pattern="2-4"), "N:M"),
    (dict(method="gptq", bits=9), "2-8"),
    (dict(method="awq", bits=1), "2-8"),
    (dict(method="prune"), "unknown compression method"),
])
def test_bad_config_rejected_before_anything_changes(bad, needle):
    model = tiny_model("llama", hidden=96)  # 96 = 3 * 32: group 48 divides it, 64 and 128 do not ...
    model.model.layers[0].mlp.down_proj = torch.nn.Linear(160, 96, bias=False)  # ... and 160 breaks 48
    model.model.layers[0].mlp.up_proj = torch.nn.Linear(96, 160, bias=False)
    model.model.layers[0].mlp.gate_proj = torch.nn.Linear(96, 160, bias=False)
    before = snapshot(model)
    ids, mask = calibration()
    with pytest.raises(ColakitError, match=None) as err:
        compress(model, ids, mask, CompressionConfig(**bad))
    assert needle in str(err.value)
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_failure_mid_run_restores_the_dense_model(monkeypatch):
    model = tiny_model("llama")
    before = snapshot(model)
    calls = {"n": 0}
    solve = gptq_module.GPTQ.solve

    def failing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] > 9:  # block 0 (7 linears) is written, then block 1 fails
            raise RuntimeError("disk full")
        return solve(self, *a, **k)

    monkeypatch.setattr(gptq_module.GPTQ, "solve", failing)
    with pytest.raises(RuntimeError):
        compress(model, *calibration(), CompressionConfig("gptq", bits=4, group_size=16))
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("method", ["gptq", "sparsegpt"])
def test_degenerate_calibration_set_gives_finite_weights(method):
    model = tiny_model("llama")
    ids = torch.full((1, 2), 5)  # one sample, two identical tokens: rank <= 2 Hessians
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compress(model, ids, None, CompressionConfig(method, bits=4 if method == "gptq" else None, group_size=16))
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert torch.isfinite(model(torch.arange(10).unsqueeze(0)).logits).all()


def test_calibration_tensors_checked():
    model = tiny_model("llama")
    with pytest.raises(ColakitError, match="vocabulary"):
        compress(model, torch.full((2, 4), 999), None, CompressionConfig("wanda"))
    with pytest.raises(ColakitError, match="no real tokens"):
        compress(model, torch.ones(2, 4, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long),
                 CompressionConfig("wanda"))
    with pytest.raises(ColakitError, match="needs calibration data"):
        compress(model, None, None, CompressionConfig("gptq", group_size=16))


@pytest.mark.parametrize("fam", ["llama", "gemma2", "gpt2", "opt"])
def test_awq_fold_preserves_the_block_function(fam):
    model = tiny_model(fam)
    layout = find_decoder(model)
    ids, mask = calibration()
    batch = capture_inputs(model, layout.layers, ids, mask, 4, "cpu")[0]
    block = layout.layers[0]
    before = run_block(block, 0, batch)
    for group in scale_groups(block, 0, []):
        cols = weight_matrix(block.get_submodule(group.linears[0])).shape[1]
        _fold(block, group, torch.linspace(0.5, 2.0, cols))
    assert torch.allclose(run_block(block, 0, batch), before, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("hidden, chosen", [(128, 128), (64, 64), (96, 32)])
def test_group_size_auto_picks_the_largest_dividing_size_and_records_it(hidden, chosen):
    model = tiny_model("llama", hidden=hidden)
    report = compress(model, *calibration(), CompressionConfig("rtn", bits=4, group_size="auto"))
    assert report.config["group_size"] == chosen
    w = pruned_linears(model)[0]
    groups = w.reshape(w.shape[0], -1, chosen)
    assert max(len(torch.unique(groups[r, g])) for r in range(4) for g in range(groups.shape[1])) <= 16
    assert any(f"auto: chose {chosen}" in n for n in report.notes)


def test_group_size_auto_refuses_models_no_automatic_size_fits():
    model = tiny_model("llama", hidden=48)  # gcd 48: neither 128, 64 nor 32 divides it
    before = snapshot(model)
    with pytest.raises(ColakitError, match="--group-size 16"):
        compress(model, *calibration(), CompressionConfig("gptq", bits=4, group_size="auto"))
    assert all(torch.equal(before[k], v) for k, v in snapshot(model).items())


def test_awq_scale_search_scores_on_the_leading_batches_holding_the_token_budget():
    from colakit.compress.methods.awq import search_batches
    from colakit.compress.runtime import Batch

    batches = [Batch(mask=torch.ones(1, n, dtype=torch.bool), hidden=torch.zeros(1, n, 4)) for n in (24, 10, 24, 3)]
    assert [search_batches(batches, t) for t in (None, 1, 24, 25, 34, 35, 10**6)] == [4, 1, 1, 2, 2, 3, 4]
    model = tiny_model("llama")
    report = compress(model, *calibration(), CompressionConfig("awq", group_size=16, batch_size=1, awq_search_tokens=30))
    assert report.config["awq_search_tokens"] == 30 and all(b["rel_error"] < 1 for b in report.blocks)
    with pytest.raises(ColakitError, match="awq_search_tokens"):
        CompressionConfig("awq", awq_search_tokens=0).validate()


@pytest.mark.parametrize("method", ["gptq", "sparsegpt"])
def test_per_linear_errors_compare_against_the_dense_weights(method):
    # regression: the dense weight was read as a view of the parameter the solver then overwrote
    report = compress(tiny_model("llama"), *calibration(), CompressionConfig(method, bits=3, group_size=16))
    assert all(0 < rec["rel_error"] < 1 for rec in report.linears.values())
