"""Moments pooling (sketched second moments of the linears' inputs) and the shared StopForward."""

import json
import math

import numpy as np
import pytest
import torch
from tiny_models import tiny_model, tiny_tokenizer
from typer.testing import CliRunner

import colakit.curate.features as F
from colakit.curate.features import (
    MOMENT_SITES,
    FeatureConfig,
    extract_features,
    pooled_activations,
)
from colakit.curate.process import Candidate
from colakit.errors import ColakitError
from colakit.model.hooks import StopForward, forward_until_stop, stop_after
from colakit.model.load import ModelHandle


def cands(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return [Candidate(rng.integers(3, 250, size=int(rng.integers(4, 24))).tolist(), "", "t", str(i), [str(i)])
            for i in range(n)]


def test_moments_ignore_padding_and_are_unit_per_layer(family):
    model = tiny_model(family)
    ids = torch.randint(3, 250, (1, 10))
    alone = pooled_activations(model, ids, torch.ones_like(ids), [0, 1], pooling="moments")
    padded_ids = torch.cat([ids, torch.full((1, 7), 5, dtype=torch.long)], 1)  # real-looking pad ids
    mask = torch.cat([torch.ones(1, 10), torch.zeros(1, 7)], 1).long()
    padded = pooled_activations(model, padded_ids, mask, [0, 1], pooling="moments")
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-4)
    assert alone.shape == (1, 2, FeatureConfig(pooling="moments").layer_width(64))
    assert torch.allclose(alone.norm(dim=-1), torch.ones(1, 2))
    # the padded positions would change the moments if they were counted
    counted = pooled_activations(model, padded_ids, torch.ones_like(padded_ids), [0, 1], pooling="moments")
    assert (counted - alone).abs().max() > 1e-3


def test_moments_are_the_sketched_hessian_of_each_linear_input():
    """Each site's vector is P^T (X^T X) P (upper triangle, off-diagonal x sqrt 2), normalised."""
    model = tiny_model("llama")
    ids = torch.randint(3, 250, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    block = model.model.layers[1]
    linears = [block.self_attn.q_proj, block.self_attn.o_proj, block.mlp.gate_proj, block.mlp.down_proj]
    seen = {}
    handles = [m.register_forward_pre_hook(lambda mod, a, k=k: seen.__setitem__(k, a[0].detach()))
               for k, m in enumerate(linears)]
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    for h in handles:
        h.remove()
    r = 6
    got = pooled_activations(model, ids, mask, [1], pooling="moments", sketch_dim=r, seed=3)[:, 0]
    tri = r * (r + 1) // 2
    iu = torch.triu_indices(r, r)
    for site in range(len(MOMENT_SITES)):
        x = seen[site]
        proj = F._sketch_matrix({}, x.shape[-1], r, 3, "cpu")
        for b in range(2):
            rows = x[b][mask[b].bool()]
            hess = proj.T @ (rows.T @ rows) @ proj  # the sketched X^T X of this sequence
            vec = hess[iu[0], iu[1]] * torch.where(iu[0] == iu[1], 1.0, math.sqrt(2))
            want = vec / vec.norm() / 2  # four unit site vectors, scaled to a unit layer vector
            torch.testing.assert_close(got[b, site * tri:(site + 1) * tri], want, atol=1e-5, rtol=1e-4)


def test_moments_deterministic_seeded_and_not_mean(tmp_path):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    pool = cands()
    moments = FeatureConfig(pooling="moments", proj_dim=24, batch_size=4)
    a = extract_features(pool, ModelHandle("tiny", model=model, tokenizer=tok), config=moments, store_dir=tmp_path / "a",
                         progress=False)
    b = extract_features(pool, ModelHandle("tiny", model=model, tokenizer=tok), config=moments, store_dir=tmp_path / "b",
                         progress=False)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (12, 24) and np.isfinite(a).all()
    other_seed = extract_features(pool, ModelHandle("tiny", model=model, tokenizer=tok), store_dir=tmp_path / "c",
                                  config=FeatureConfig(pooling="moments", proj_dim=24, seed=1), progress=False)
    mean = extract_features(pool, ModelHandle("tiny", model=model, tokenizer=tok), store_dir=tmp_path / "d",
                            config=FeatureConfig(proj_dim=24), progress=False)
    assert not np.allclose(a, other_seed) and not np.allclose(a, mean)
    # distances between candidates differ too (not just a rotation of the same geometry)
    dist = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)  # noqa: E731
    assert np.corrcoef(dist(a).ravel(), dist(mean).ravel())[0, 1] < 0.99


def test_store_never_reuses_mean_features_for_moments(tmp_path, monkeypatch):
    monkeypatch.setenv("COLAKIT_CACHE", str(tmp_path))
    model, tok = tiny_model("llama"), tiny_tokenizer()
    pool = cands(8)
    mean = extract_features(pool, ModelHandle("tiny", model=model, tokenizer=tok), config=FeatureConfig(proj_dim=16),
                            progress=False)
    moments = extract_features(pool, ModelHandle("tiny", model=model, tokenizer=tok),
                               config=FeatureConfig(proj_dim=16, pooling="moments"), progress=False)
    stores = sorted((tmp_path / "features").iterdir())
    assert len(stores) == 2 and not np.allclose(mean, moments)
    assert {json.loads((s / "manifest.json").read_text())["pooling"] for s in stores} == {"mean", "moments"}


def test_bad_pooling_settings():
    with pytest.raises(ColakitError, match="unknown feature pooling"):
        FeatureConfig(pooling="max")
    with pytest.raises(ColakitError, match="sketch_dim"):
        FeatureConfig(pooling="moments", sketch_dim=0)
    model = tiny_model("llama")
    ids = torch.randint(3, 250, (1, 4))
    with pytest.raises(ColakitError, match="unknown feature pooling"):
        pooled_activations(model, ids, torch.ones_like(ids), [0], pooling="max")


def test_one_stop_forward_shared_by_features_and_the_compression_engine():
    import colakit.compress.runtime as runtime

    assert not hasattr(F, "_StopForward") and not hasattr(runtime, "_StopForward")
    assert runtime.StopForward is StopForward
    model = tiny_model("llama")
    head = []
    model.lm_head.register_forward_hook(lambda *a: head.append(1))
    handle = stop_after(model.model.layers[0])
    ids = torch.randint(3, 250, (1, 5))
    assert forward_until_stop(model, input_ids=ids) is True and head == []
    handle.remove()
    assert forward_until_stop(model, input_ids=ids) is False and head == [1]
    # the engine's input capture stops through the same exception (no block and no head runs)
    batches = runtime.capture_inputs(model, model.model.layers, ids, torch.ones_like(ids), batch_size=1, device="cpu")
    assert len(batches) == 1 and head == [1]


def test_cli_feature_pooling_reaches_the_feature_config(tmp_path, monkeypatch):
    import colakit.curate.pipeline as curate_mod
    from colakit.cli import app

    seen = {}

    def capture(config, **_kw):
        seen["features"] = config.features
        raise ColakitError("stopped by the test")  # the pipeline itself is tested elsewhere

    monkeypatch.setattr(curate_mod, "curate", capture)
    args = ["curate", "--method", "cola", "--sources", "c4", "--out", str(tmp_path / "x")]
    result = CliRunner().invoke(app, [*args, "--feature-pooling", "moments", "--feature-layers", "every:2"])
    assert "stopped by the test" in str(result.exception)
    assert seen["features"].pooling == "moments" and seen["features"].layers == "every:2"
    CliRunner().invoke(app, args)
    assert seen["features"].pooling == "mean"  # the default stays mean pooling
    bad = CliRunner().invoke(app, [*args, "--feature-pooling", "max"])
    assert isinstance(bad.exception, ColakitError) and "unknown feature pooling" in str(bad.exception)
