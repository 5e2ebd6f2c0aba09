"""The executor contract, and the Ray executor against the local one: same pool, same feature store,
same CalibrationSet, byte for byte.

A local Ray with 3 CPUs (2 one-CPU workers and room to spare); one Ray session for the module
(starting Ray costs ~10 s). Executors get a stall timeout far below the default 30 minutes, so
workers that cannot start fail the test instead of hanging CI.
"""

import functools
from pathlib import Path

import numpy as np
import pytest
from tiny_models import tiny_model, tiny_tokenizer

from colakit.curate.features import FeatureConfig, extract_features
from colakit.curate.pipeline import CurateConfig, build_pool, curate
from colakit.curate.select import get_selector
from colakit.errors import ColakitError
from colakit.executors import FAULT_ENV, LocalExecutor, get_executor, in_order
from colakit.executors.ray import RayExecutor, forwarded_env
from colakit.model.load import ModelHandle

try:
    import ray
except ImportError:  # the contract tests run without it
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed (pip install 'colakit[ray]'): "
                               "Ray executor untested")

WORDS = ("calibration data decides which capabilities survive compression the quick brown fox jumps over "
         "lazy dog question answer reasoning chain code def return value layer weight matrix").split()


STALL_S = 900  # a worker restart under heavy load takes minutes (importing torch, loading the model)


def _scaled(factor, unit):
    return unit * factor


def test_local_map_skips_done_units_and_builds_the_state_once_and_lazily():
    setups = []
    setup = lambda: setups.append(1) or 10  # noqa: E731
    results = LocalExecutor().map(_scaled, [1, 2, 3, 4], setup=setup, done=lambda u: u % 2 == 0)
    assert len(results) == 2 and setups == []  # nothing runs before the results are asked for
    assert list(results) == [(0, 10), (2, 30)] and setups == [1]
    assert list(LocalExecutor().map(_scaled, [2], setup=setup, done=lambda u: True)) == [] and setups == [1]
    assert list(LocalExecutor().map(functools.partial(pow, 2), [3, 4])) == [(0, 8), (1, 16)]  # no setup: fn(unit)


def test_in_order_streams_results_back_into_unit_order():
    arrived = [(2, "c"), (0, "a"), (3, "d"), (1, "b")]
    assert list(in_order(arrived, [0, 1, 2, 3])) == [(0, "a"), (1, "b"), (2, "c"), (3, "d")]


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": forwarded_env()})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two text sources (a directory of documents each) with a few duplicate documents across them."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.choice(WORDS, size=int(rng.integers(20, 120)))) + "." for _ in range(80)]
    for name, part in (("a", docs[:50]), ("b", docs[40:])):  # docs 40-49 in both: windows to deduplicate
        (root / name).mkdir()
        for i, text in enumerate(part):
            (root / name / f"{i:03d}.txt").write_text(text)
    return root


def files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


@needs_ray
def test_ray_pool_features_and_selection_match_local(ray_session, corpus, tmp_path, monkeypatch):
    """Also with a worker killed mid-run: Ray restarts it, retries its shard, and nothing changes."""
    tok, model = tiny_tokenizer(), tiny_model("llama")
    # truncate: one window per document, so the documents both sources hold give duplicate windows
    cfg = CurateConfig(sources=[f"text:{corpus / 'a'}", f"text:{corpus / 'b'}"], seq_len=24, pool_per_source=60,
                       packing="truncate")
    executor = RayExecutor(workers=2, stall_timeout_s=STALL_S)
    local_pool, local_prov = build_pool(cfg, tok, store_dir=tmp_path / "pool-local")
    ray_pool, ray_prov = build_pool(cfg, tok, executor=executor, store_dir=tmp_path / "pool-ray")
    assert local_prov == ray_prov
    assert local_prov[1]["candidates"] < local_prov[1]["documents_read"]  # windows seen in source a dropped
    assert files(tmp_path / "pool-local") == files(tmp_path / "pool-ray")
    assert len(local_pool) == len(ray_pool) == sum(p["candidates"] for p in local_prov) > 64

    fc = FeatureConfig(shard_size=16, batch_size=4, proj_dim=24)
    local = extract_features(local_pool, ModelHandle("tiny", model=model, tokenizer=tok), config=fc,
                             store_dir=tmp_path / "feat-local", progress=False)
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(FAULT_ENV, f"features/1:{marker}")  # the first attempt at shard 1 kills its worker
    remote = extract_features(ray_pool, ModelHandle("tiny", model=model, tokenizer=tok), config=fc, executor=executor,
                              store_dir=tmp_path / "feat-ray", progress=False)
    assert marker.exists()  # a worker did die mid-run
    assert len(list((tmp_path / "feat-ray").glob("shard-*.npy"))) == -(-len(local_pool) // 16)
    assert files(tmp_path / "feat-local") == files(tmp_path / "feat-ray")
    np.testing.assert_array_equal(local, remote)

    pick = lambda pool, f: get_selector("cola", source_selection=False).select(pool, f, 6, 0)  # noqa: E731
    a, b = pick(local_pool, local), pick(ray_pool, remote)
    assert a.indices == b.indices and a.distances == b.distances
    assert [local_pool[i] for i in a.indices] == [ray_pool[i] for i in b.indices]

    empty = tmp_path / "empty.txt"  # a worker's error reaches the driver as one ColakitError line
    empty.write_text("")
    with pytest.raises(ColakitError, match="Ray sources unit text:.*empty.txt failed: .*no documents"):
        build_pool(CurateConfig(sources=[f"text:{empty}"], n=2, seq_len=24), tok, executor=executor)


@needs_ray
def test_get_executor_ray():
    assert isinstance(get_executor("ray", address=None), RayExecutor)
    with pytest.raises(ColakitError, match="stall timeout 0"):
        RayExecutor(stall_timeout_s=0)


@needs_ray
def test_workers_that_cannot_start_fail_with_the_stall_timeout(ray_session, corpus, tmp_path):
    """Feature workers asking for a GPU this Ray does not have never start: a clear error, not a hang."""
    tok, model = tiny_tokenizer(), tiny_model("llama")
    pool, _ = build_pool(CurateConfig(sources=[f"text:{corpus / 'a'}"], seq_len=24, pool_per_source=8), tok)
    stuck = RayExecutor(workers=1, gpus_per_worker=1, stall_timeout_s=5)
    with pytest.raises(ColakitError, match="Ray features units made no progress for 5 s: no worker started"):
        extract_features(pool, ModelHandle("tiny", model=model, tokenizer=tok), config=FeatureConfig(shard_size=4, proj_dim=8),
                         executor=stuck, store_dir=tmp_path / "feat", progress=False)


@needs_ray
@pytest.mark.integration
def test_cola_calibration_set_identical_on_ray(ray_session, tmp_path):
    """The whole COLA curate (stage 1 probes + stage 3) on the real model: local and Ray, byte for byte.

    Both compute with one torch thread per process (a Ray worker's default): some matrix shapes give
    results that depend on the thread count, so that is the condition of the guarantee (docs/scale.md).
    """
    from colakit.model.load import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    cfg = lambda: CurateConfig(sources=["c4", "code"], method="cola", n=6, seq_len=64, pool_per_source=40,  # noqa: E731
                               probes_per_capability=2, features=FeatureConfig(layers="0,1", shard_size=32))
    import shutil
    import time

    import torch

    from colakit.cache import cache_dir

    def used_stores(since):  # opening a store rewrites its manifest
        return [d for d in (cache_dir() / "features").iterdir() if (d / "manifest.json").stat().st_mtime >= since]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.time()
        curate(cfg(), out=tmp_path / "warm", tokenizer=tok)
        for d in used_stores(t0):  # stores an earlier run left: the local run below computes every shard
            shutil.rmtree(d)
        t0 = time.time()
        curate(cfg(), out=tmp_path / "local", tokenizer=tok)
    finally:
        torch.set_num_threads(threads)
    # set aside and deleted, so the Ray run computes every shard itself and must write the same files
    stores = used_stores(t0)
    assert stores
    for d in stores:
        shutil.copytree(d, tmp_path / "stores" / d.name)
        shutil.rmtree(d)
    curate(cfg(), out=tmp_path / "ray", tokenizer=tok, executor=RayExecutor(workers=2, stall_timeout_s=STALL_S))
    for d in stores:
        assert files(d) == files(tmp_path / "stores" / d.name)
    assert (tmp_path / "local" / "samples.jsonl").read_bytes() == (tmp_path / "ray" / "samples.jsonl").read_bytes()
    # the manifests too, byte for byte (a set records no creation time: saving it twice gives the same files)
    assert (tmp_path / "local" / "manifest.json").read_bytes() == (tmp_path / "ray" / "manifest.json").read_bytes()
