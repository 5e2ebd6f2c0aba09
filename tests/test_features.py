import numpy as np
import pytest
import torch
from tiny_models import tiny_model, tiny_tokenizer

import colakit.curate.features as F
from colakit.curate.features import (
    FeatureConfig,
    extract_features,
    jl_dim,
    pooled_activations,
)
from colakit.curate.process import Candidate
from colakit.errors import ColakitError
from colakit.model.load import ModelHandle


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


@pytest.mark.parametrize("pooling", ["mean", "moments"])
def test_stops_after_last_hooked_layer(pooling):
    model = tiny_model("llama")
    calls = []
    model.lm_head.register_forward_hook(lambda *a: calls.append("head"))
    model.model.layers[1].register_forward_hook(lambda *a: calls.append("layer1"))
    ids = torch.randint(3, 250, (2, 8))
    out = pooled_activations(model, ids, torch.ones_like(ids), [0], pooling=pooling)
    assert calls == [] and out.shape[1] == 1


def test_store_resumes_to_identical_result(tmp_path, monkeypatch):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    pool = cands(50)
    cfg = FeatureConfig(shard_size=16, batch_size=4, proj_dim=32)
    full = extract_features(pool, ModelHandle("tiny", model=model, tokenizer=tok), config=cfg, store_dir=tmp_path / "a",
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
        extract_features(pool, ModelHandle("tiny", model=model, tokenizer=tok), config=cfg, store_dir=tmp_path / "b",
                         progress=False)
    assert sorted(p.name for p in (tmp_path / "b").glob("shard-*.npy")) == ["shard-00000.npy", "shard-00001.npy"]
    calls["n"] = -100
    resumed = extract_features(pool, ModelHandle("tiny", model=model, tokenizer=tok), config=cfg, store_dir=tmp_path / "b",
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


KILL_SCRIPT = r"""
import sys, time
sys.path.insert(0, sys.argv[3])
import numpy as np
import colakit.curate.features as F
from colakit.curate.process import Candidate
from colakit.model.load import ModelHandle
from tiny_models import tiny_model, tiny_tokenizer
rng = np.random.default_rng(0)
pool = [Candidate(rng.integers(3, 250, size=16).tolist(), "", "t", str(i)) for i in range(int(sys.argv[2]))]
real = F._shard_features
def slow(*a, **k):  # leave time to be killed between shards
    out = real(*a, **k)
    time.sleep(float(sys.argv[4]))
    return out
F._shard_features = slow
feats = F.extract_features(pool, ModelHandle("tiny", model=tiny_model("llama"), tokenizer=tiny_tokenizer()),
                           config=F.FeatureConfig(shard_size=8, batch_size=4, proj_dim=16),
                           store_dir=sys.argv[1], progress=False)
np.save(sys.argv[1] + ".result.npy", feats)
"""


def test_sigkill_mid_run_resumes_to_identical_result(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "extract.py"
    script.write_text(KILL_SCRIPT)
    tests_dir = str(Path(__file__).parent)
    ref = subprocess.run([sys.executable, str(script), str(tmp_path / "ref"), "40", tests_dir, "0"], check=True)
    assert ref.returncode == 0
    store = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(store), "40", tests_dir, "1.5"])
    deadline = time.time() + 120
    while time.time() < deadline and len(list(store.glob("shard-*.npy"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in store.glob("shard-*.npy"))
    assert 2 <= len(done) < 5, done  # killed part-way: some shards finished, not all
    assert not (tmp_path / "killed.result.npy").exists()
    subprocess.run([sys.executable, str(script), str(store), "40", tests_dir, "0"], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "ref.result.npy"), np.load(tmp_path / "killed.result.npy"))


def test_stored_pool_and_list_share_one_store(tmp_path):
    from colakit.curate.pool import PoolWriter, StoredPool

    pool = cands(30)
    writer = PoolWriter(tmp_path / "pool", shard_size=7)  # pool shards and feature shards need not align
    writer.extend(pool)
    writer.close()
    model, tok = tiny_model("llama"), tiny_tokenizer()
    cfg = FeatureConfig(shard_size=16, batch_size=4, proj_dim=16)
    as_list = extract_features(pool, ModelHandle("tiny", model=model, tokenizer=tok), config=cfg, progress=False,
                               store_dir=tmp_path / "a")
    stored = extract_features(StoredPool(tmp_path / "pool"), ModelHandle("tiny", model=model, tokenizer=tok), config=cfg,
                              progress=False, store_dir=tmp_path / "b")
    np.testing.assert_array_equal(as_list, stored)
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
