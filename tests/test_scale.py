"""Scale without Ray: the on-disk candidate pool, bounded memory, one padding rule, k-means on a sample."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import tiny_model, tiny_tokenizer

import colakit.curate.process as P
from colakit.calibset import CalibrationSet, Sample
from colakit.curate.features import FeatureConfig, _pool_key, extract_features
from colakit.curate.pool import Chain, PoolWriter, StoredPool
from colakit.curate.process import Candidate, pad_right
from colakit.curate.select.cola import assign_chunked, kmeans, nearest_unique
from colakit.errors import ColakitError
from colakit.executors import LocalExecutor, get_executor
from colakit.model.load import ModelHandle


def cands(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Candidate(rng.integers(0, 50000, size=int(rng.integers(1, 30))).tolist(), f"t{i} é\n", f"s{i % 3}",
                      f"d{i}", [f"d{i}", f"d{i + 1}"], i) for i in range(n)]


def test_stored_pool_reads_back_what_was_written(tmp_path):
    pool = cands(30)
    writer = PoolWriter(tmp_path / "p", shard_size=7)
    writer.extend(pool)
    writer.close()
    stored = StoredPool(tmp_path / "p")
    assert len(stored) == 30 and len(list((tmp_path / "p").glob("tokens-*.i32"))) == 5
    assert list(stored) == pool and stored[-1] == pool[-1] and stored[5:16] == pool[5:16]
    assert [stored[i] for i in (29, 0, 14, 3)] == [pool[i] for i in (29, 0, 14, 3)]  # random access
    assert stored.token_ids(6, 9) == [c.input_ids for c in pool[6:9]]
    assert stored.key == _pool_key(pool)  # the feature store sees the same pool either way
    with pytest.raises(IndexError):
        stored[30]
    chain = Chain(stored, pool[:4])
    assert len(chain) == 34 and chain[31] == pool[1] and chain[29] == pool[29]
    assert chain.key == _pool_key(pool + pool[:4])
    copy = pickle.loads(pickle.dumps(stored))  # what a worker gets: the path, never the ownership
    assert list(copy) == pool


def test_owned_pool_is_removed_with_its_object(tmp_path):
    writer = PoolWriter(tmp_path / "p")
    writer.extend(cands(3))
    writer.close()
    stored = StoredPool(tmp_path / "p", owned=True)
    pickle.loads(pickle.dumps(stored)).close()
    assert (tmp_path / "p").exists()
    del stored
    assert not (tmp_path / "p").exists()
    with pytest.raises(ColakitError, match="not a complete candidate pool"):
        StoredPool(tmp_path / "p")


def test_one_padding_rule(monkeypatch):
    seqs = [[5, 6, 7], [8], [9, 10]]
    ids, mask = pad_right(seqs, 0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    calib = CalibrationSet([Sample(s) for s in seqs], {})
    assert all(torch.equal(a, b) for a, b in zip(calib.to_tensors(0), (ids, mask)))
    calls = []
    real = P.pad_right
    monkeypatch.setattr(P, "pad_right", lambda s, p: calls.append(len(s)) or real(s, p))
    pool = [Candidate(s, "", "t", str(i)) for i, s in enumerate(seqs)]
    extract_features(pool, ModelHandle("tiny", model=tiny_model("llama"), tokenizer=tiny_tokenizer()), progress=False,
                     config=FeatureConfig(proj_dim=8, batch_size=2), store_dir=Path(__import__("tempfile").mkdtemp()))
    assert calls == [2, 1]  # the feature batches were padded by the same helper


MEMORY_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
from colakit.curate.pipeline import CurateConfig, build_pool
from tiny_models import tiny_tokenizer

def hwm():  # peak RSS (MiB) since the last reset
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024

tok = tiny_tokenizer()
cfg = CurateConfig(sources=["text:" + sys.argv[2]], seq_len=64, pool_per_source=int(sys.argv[3]))
open("/proc/self/clear_refs", "w").write("5")  # peak := now: measure the pool, not the imports
base = hwm()
pool, prov = build_pool(cfg, tok)
stored = hwm()
held = list(pool)  # what build_pool used to keep: every Candidate in RAM
print(len(pool), stored - base, hwm() - base)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to reset peak RSS")
def test_pool_memory_does_not_grow_with_pool_size(tmp_path):
    rng = np.random.default_rng(0)
    words = np.array("the of code layer weight answer question reason data calibration model token".split())
    (tmp_path / "corpus.txt").write_text("\n\n".join(" ".join(rng.choice(words, size=200)) for _ in range(9000)))
    script = tmp_path / "mem.py"
    script.write_text(MEMORY_SCRIPT)

    def run(n):
        out = subprocess.run([sys.executable, str(script), str(Path(__file__).parent), str(tmp_path / "corpus.txt"),
                              str(n)], check=True, capture_output=True, text=True).stdout.split()
        return int(out[0]), float(out[1]), float(out[2])

    n_small, small, _ = run(1000)
    n_big, big, as_list = run(20000)
    assert (n_small, n_big) == (1000, 20000)
    # 20x the candidates: the store costs a few MB (dedup digests); the list it replaced, tens of MB
    assert big - small < 8, (small, big)
    print(f"peak RSS growth while building the pool: 1k {small:.1f} MiB, 20k {big:.1f} MiB; "
          f"20k as a list {as_list:.1f} MiB")
    assert as_list - big > 2 * max(big - small, 2), (big, as_list)


def test_kmeans_on_a_sample_assigns_every_point(tmp_path):
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(8, 16)) * 4
    x = (centers[rng.integers(0, 8, 3000)] + rng.normal(size=(3000, 16))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")  # features that stay on disk
    cent, inertia, assign = kmeans(mm, 8, seed=0, max_train=600, chunk=500)
    d, nearest = assign_chunked(x, cent, chunk=3000)
    assert assign.shape == (3000,) and np.array_equal(assign, nearest)
    assert inertia == pytest.approx(float(d.sum(dtype=np.float64)), rel=1e-6)
    _, full, _ = kmeans(x, 8, seed=0)
    assert inertia < 1.05 * full  # the sample finds the same clusters
    assert kmeans(mm, 8, seed=0, max_train=600, chunk=500)[1] == inertia  # deterministic
    assert nearest_unique(mm, cent, chunk=257) == nearest_unique(x, cent)  # chunked scan, same medoids
    with pytest.raises(ColakitError, match="max_train"):
        kmeans(x, 8, seed=0, max_train=4)


def test_local_executor_is_the_default():
    assert isinstance(get_executor(), LocalExecutor)
    with pytest.raises(ColakitError, match="unknown executor"):
        get_executor("slurm")
    with pytest.raises(ColakitError, match="--address is for --executor ray"):
        get_executor("local", address="auto")
