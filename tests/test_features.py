import numpy as np
import pytest
import torch

import colakit.features as F
from colakit.errors import ColakitError
from colakit.features import FeatureConfig, extract_features, jl_dim, pooled_activations
from colakit.process import Candidate
from tiny_models import tiny_model, tiny_tokenizer


def cands(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return [Candidate(rng.integers(3, 250, size=int(rng.integers(4, 24))).tolist(), "", "t", str(i), [str(i)])
            for i in range(n)]


def test_jl_dim_grows_with_pool():
    assert jl_dim(1000) == 332 and jl_dim(20000) == 476 and jl_dim(20000) > jl_dim(1000)


def test_padding_never_counts(family):
    model = tiny_model(family)
    ids = torch.randint(3, 250, (1, 10))
    alone = pooled_activations(model, ids, torch.ones_like(ids), [0, 1])
    padded_ids = torch.cat([ids, torch.zeros(1, 6, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 10), torch.zeros(1, 6)], 1).long()
    padded = pooled_activations(model, padded_ids, mask, [0, 1])
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-4)
    assert torch.allclose(alone.norm(dim=-1), torch.ones(1, 2))


def test_stops_after_last_hooked_layer():
    model = tiny_model("llama")
    calls = []
    model.lm_head.register_forward_hook(lambda *a: calls.append("head"))
    model.model.layers[1].register_forward_hook(lambda *a: calls.append("layer1"))
    ids = torch.randint(3, 250, (2, 8))
    pooled_activations(model, ids, torch.ones_like(ids), [0])
    assert calls == []


def test_store_resumes_to_identical_result(tmp_path, monkeypatch):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    pool = cands(50)
    cfg = FeatureConfig(shard_size=16, batch_size=4, proj_dim=32)
    full = extract_features(pool, "tiny", model=model, tokenizer=tok, config=cfg, store_dir=tmp_path / "a",
                            progress=False)
    assert full.shape == (50, 32) and full.dtype == np.float32

    real = F._shard_features
    calls = {"n": 0}

    def crash_on_third(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # a kill in the middle of shard 3
        return real(*a, **k)

    monkeypatch.setattr(F, "_shard_features", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        extract_features(pool, "tiny", model=model, tokenizer=tok, config=cfg, store_dir=tmp_path / "b",
                         progress=False)
    assert sorted(p.name for p in (tmp_path / "b").glob("shard-*.npy")) == ["shard-00000.npy", "shard-00001.npy"]
    calls["n"] = -100
    resumed = extract_features(pool, "tiny", model=model, tokenizer=tok, config=cfg, store_dir=tmp_path / "b",
                               progress=False)
    assert calls["n"] == -98  # only the two missing shards were computed
    np.testing.assert_array_equal(full, resumed)


def test_layer_specs():
    assert FeatureConfig(layers="every:4").layer_indices(10) == [0, 4, 8, 9]
    assert FeatureConfig(layers="1,3").layer_indices(10) == [1, 3]
    with pytest.raises(ColakitError):
        FeatureConfig(layers="12").layer_indices(10)
    with pytest.raises(ColakitError):
        FeatureConfig(layers="x").layer_indices(10)
