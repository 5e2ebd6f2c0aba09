"""Models bigger than memory: compress block by block from the files, features that read only the
blocks they run, evaluation across devices (accelerate's device maps), and the checks before work."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from colakit.calibset import CalibrationSet
from colakit.compress import CompressionConfig, compress_to_dir
from colakit.errors import ColakitError
from colakit.evaluate import EvalConfig, evaluate
from colakit.evaluate.runner import model_hash
from colakit.model.load import load_model
from colakit.model.placement import parse_max_memory
from colakit.model.streamed import load_partial
from test_compress_cli import word_tokenizer
from tiny_models import tiny_model

CASES = {  # a pruner, a quantizer with attention value Hessians, AWQ's whole-block path, data-free RTN
    "sparsegpt-2:4-w4": ("sparsegpt", dict(pattern="2:4", bits=4, group_size=16)),
    "gptq": ("gptq", dict(bits=4, group_size=16)),
    "awq": ("awq", dict(bits=4, group_size=16)),
    "rtn": ("rtn", dict(bits=4, group_size=16)),
}


def tokens(seed, n=4, length=24):
    return torch.randint(3, 256, (n, length), generator=torch.Generator().manual_seed(seed))


def model_dir(tmp_path, family, **kw):
    """A tiny model saved as its users' models are: safetensors files (sharded when asked)."""
    path, tok = tmp_path / f"{family}-model", word_tokenizer()
    tiny_model(family, **kw).save_pretrained(path, **({"max_shard_size": "60KB"} if family == "llama" else {}))
    tok.save_pretrained(path)
    calib = tmp_path / "calib"
    if not calib.exists():
        CalibrationSet.from_token_ids(tokens(seed=0).tolist(), tokenizer=tok, model=str(path)).save(calib)
    return path, calib


def same_weights(a, b) -> bool:
    sa, sb = load_model(str(a), device="cpu").state_dict(), load_model(str(b), device="cpu").state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("case", CASES)
def test_streamed_compression_writes_the_weights_of_the_loaded_run_bit_for_bit(family, case, tmp_path):
    method, params = CASES[case]
    path, calib = model_dir(tmp_path, family)
    fmt = "fake-quant" if family == "gpt2" else "compressed-tensors"  # Conv1D has no packed form
    reports = {}
    for streamed in (False, True):
        reports[streamed] = compress_to_dir(str(path), calib, tmp_path / f"out-{streamed}",
                                            CompressionConfig(method, **params), device="cpu", save_format=fmt,
                                            streamed=streamed)
    assert reports[True]["loading"] == "streamed" and "loading" not in reports[False]
    assert same_weights(tmp_path / "out-False", tmp_path / "out-True")
    assert reports[True]["blocks"] == reports[False]["blocks"] and reports[True]["notes"] == reports[False]["notes"]
    assert json.loads((tmp_path / "out-True" / "config.json").read_text()) == \
        json.loads((tmp_path / "out-False" / "config.json").read_text())
    assert reports[True]["peak_memory"]["host_rss_peak_mib"] > 0


def test_the_input_capture_reads_only_the_embedding_rows_of_the_calibration_ids(family, tmp_path):
    from colakit.compress.engine import Residency
    from colakit.compress.streamed import StreamedWeights
    from colakit.model.checkpoint import Checkpoint
    from colakit.model.streamed import move_buffers, skeleton

    path, _ = model_dir(tmp_path, family)
    ids = tokens(seed=1)
    loaded = load_model(str(path), device="cpu").get_input_embeddings()
    whole = loaded.weight
    model = skeleton(path, torch.float32)
    move_buffers(model, "cpu")
    checkpoint = Checkpoint(path, model.base_model_prefix)
    rows = torch.unique(ids)
    name = next(n for n in checkpoint.where if n.endswith(("wte.weight", "embed_tokens.weight")))
    stored = checkpoint.read(name)
    assert torch.equal(checkpoint.read_rows(name, rows, slab=7), stored[rows])  # slabs smaller than the table
    table = model.get_input_embeddings()
    table.padding_idx = 250  # past the rows read (Qwen's pad id is 151643): F.embedding would refuse it
    meta = table.weight
    weights = StreamedWeights(model, checkpoint, torch.device("cpu"), torch.float32, writer=None, pack_config=None)
    with weights.inputs(ids) as renumbered:
        assert table.weight.shape == (len(rows), whole.shape[1])  # the rows used, not the table
        assert torch.equal(table(renumbered), loaded(ids))  # each token finds its own row (scaled, for Gemma)
    assert table.weight is meta and table.weight.is_meta  # the skeleton (and a tied head) as before
    assert table.padding_idx == 250
    with Residency().inputs(ids) as same:
        assert same is ids


@pytest.mark.integration
def test_streamed_gptq_of_the_default_model_matches_the_loaded_run(tmp_path, default_calib):
    """The default model (30 blocks, tied embeddings), GPTQ w4 g64 packed: the same weights either way."""
    config = CompressionConfig("gptq", bits=4, group_size=64)
    for streamed in (False, True):
        compress_to_dir("smollm2-135m", default_calib, tmp_path / f"out-{streamed}", config, device="cpu",
                        streamed=streamed)
    assert same_weights(tmp_path / "out-False", tmp_path / "out-True")


@pytest.fixture
def default_calib(tmp_path):
    from colakit.model.load import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    ids = tok(["The capital of France is Paris. It lies on the Seine.",
               "def add(a, b):\n    return a + b\n# adds two numbers"] * 2)["input_ids"]
    CalibrationSet.from_token_ids(ids, tokenizer=tok, model="smollm2-135m").save(tmp_path / "calib")
    return tmp_path / "calib"


def test_features_read_only_the_blocks_they_run(tmp_path):
    path, _ = model_dir(tmp_path, "qwen2", layers=4)
    partial = load_partial(path, torch.device("cpu"), torch.float32, upto=1)
    full = load_model(str(path), device="cpu")
    on = {n for n, p in partial.named_parameters() if p.device.type != "meta"}
    assert on == {n for n, _ in full.named_parameters() if n.startswith(("model.embed_tokens", "model.layers.0.",
                                                                         "model.layers.1."))}
    got = {}
    for name, m in (("partial", partial), ("full", full)):
        m.model.layers[1].register_forward_hook(lambda _m, _a, out, key=name: got.setdefault(key, out))
        with pytest.raises(RuntimeError) if name == "partial" else _nothing():
            m(input_ids=tokens(seed=1))  # the partial model cannot run past block 1 (meta weights)
    assert torch.equal(got["partial"], got["full"])


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_dispatched_model_with_disk_offload_evaluates_and_hashes_like_the_loaded_one(tmp_path):
    path, _ = model_dir(tmp_path, "llama")
    full = load_model(str(path), device="cpu")
    dispatched = load_model(str(path), device="cpu", device_map="auto", max_memory="cpu=200KB")
    assert "disk" in set(dispatched.hf_device_map.values())
    ids = tokens(seed=3)
    assert torch.equal(full(input_ids=ids).logits, dispatched(input_ids=ids).logits)
    assert model_hash(full) == model_hash(dispatched)
    results = evaluate(dispatched, word_tokenizer(), "ppl_wiki", limit=1, config=EvalConfig(ppl_seq_len=128))
    assert results["model"]["hash"] == model_hash(full) and results["model"]["device"] == "cpu"
    assert results["peak_memory"]["host_rss_peak_mib"] > 0


def test_max_memory_is_parsed_as_accelerate_reads_it_and_bad_values_are_named():
    assert parse_max_memory("0=20GiB, cpu=500MB") == {0: 20 * 2**30, "cpu": 500 * 10**6}
    assert parse_max_memory({"cuda:1": "1GiB"}) == {1: 2**30}
    with pytest.raises(ColakitError, match="size 'lots' for cpu is not a size"):
        parse_max_memory("cpu=lots")
    with pytest.raises(ColakitError, match="names device 'gpu0'"):
        parse_max_memory("gpu0=1GiB")


def test_a_max_memory_below_one_block_is_refused_naming_the_block_before_any_work(tmp_path):
    path, calib = model_dir(tmp_path, "llama")
    with pytest.raises(ColakitError, match=r"cpu=9.8 KiB cannot hold decoder block 0 \(144.5 KiB of weights\)"):
        compress_to_dir(str(path), calib, tmp_path / "out", CompressionConfig("gptq", bits=4, group_size=16),
                        device="cpu", max_memory="cpu=10KB")
    with pytest.raises(ColakitError, match="cannot hold decoder block"):
        load_model(str(path), device="cpu", device_map="auto", max_memory="cpu=10KB")
    assert not (tmp_path / "out").exists()


def test_truncated_and_incomplete_checkpoints_are_named_before_any_work(tmp_path):
    path, calib = model_dir(tmp_path, "llama")
    shard = sorted(path.glob("model-*.safetensors"))[1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    config = CompressionConfig("gptq", bits=4, group_size=16)
    with pytest.raises(ColakitError, match=f"{shard.name} is not a complete safetensors file"):
        compress_to_dir(str(path), calib, tmp_path / "out", config, device="cpu")
    with pytest.raises(ColakitError, match=f"{shard.name} is not a complete safetensors file"):
        load_model(str(path), device="cpu")
    shard.write_bytes(data)
    index = path / "model.safetensors.index.json"
    meta = json.loads(index.read_text())
    del meta["weight_map"]["model.layers.1.mlp.down_proj.weight"]
    index.write_text(json.dumps(meta))
    with pytest.raises(ColakitError, match="holds no tensor 'model.layers.1.mlp.down_proj.weight'"):
        compress_to_dir(str(path), calib, tmp_path / "out", config, device="cpu")
    with pytest.raises(ColakitError, match="holds no tensor 'model.layers.1.mlp.down_proj.weight'"):
        load_model(str(path), device="cpu")
    assert not (tmp_path / "out").exists()


# A child process whose address space is capped below the model's float32 size (plus what Python,
# torch and the libraries already take) compresses it block by block; loading it whole under the
# same cap fails, which shows the cap binds.
_CAPPED = textwrap.dedent("""
    import json, resource, sys
    import torch
    from colakit.compress import CompressionConfig, compress_to_dir
    torch.ones(256, 256) @ torch.ones(256, 256)  # thread pools and allocator warm before the cap is set
    budget, streamed = int(sys.argv[3]), sys.argv[4] == "1"
    vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + budget, vm + budget))
    try:
        compress_to_dir(sys.argv[1], None, sys.argv[2], CompressionConfig("rtn", bits=4, group_size=64),
                        device="cpu", save_format="fake-quant", streamed=streamed)
    except MemoryError:
        print("MemoryError"); sys.exit(3)
    print("ok")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_compression_under_a_memory_cap_below_the_model_size_gives_the_uncapped_weights(tmp_path):
    path = tmp_path / "wide"  # 8 blocks of 16 MiB in float32 (128 MiB) + 2 MiB of embeddings
    tiny_model("llama", vocab=512, hidden=1024, layers=8).save_pretrained(path, max_shard_size="20MB")
    word_tokenizer().save_pretrained(path)
    size = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    budget = size // 2  # half the model
    # big blocks straight from mmap, so a freed block returns its address space (glibc would keep it)
    env = {**os.environ, "MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "1048576", "OMP_NUM_THREADS": "1"}

    def run(out, streamed):
        return subprocess.run([sys.executable, "-c", _CAPPED, str(path), str(out), str(budget), streamed],
                              capture_output=True, text=True, env=env, timeout=600)

    capped = run(tmp_path / "capped", "1")
    assert capped.returncode == 0 and "ok" in capped.stdout, capped.stderr[-2000:]
    whole = run(tmp_path / "whole", "0")
    assert whole.returncode != 0, "loading the whole model fit under the cap: the cap does not bind"
    compress_to_dir(str(path), None, tmp_path / "uncapped", CompressionConfig("rtn", bits=4, group_size=64),
                    device="cpu", save_format="fake-quant", streamed=False)
    assert same_weights(tmp_path / "capped", tmp_path / "uncapped")


def test_the_command_line_refuses_bad_placements_with_one_line_before_loading(tmp_path):
    from test_bad_input import colakit

    path, calib = model_dir(tmp_path, "llama")
    cases = {  # args -> what the message names
        ("compress", "--model", path, "--calib", calib, "--method", "gptq", "--out", tmp_path / "o", "--max-memory",
         "cpu=10KB"): "cannot hold decoder block 0 (144.5 KiB of weights)",
        ("evaluate", "--model", path, "--tasks", "ppl_wiki", "--device-map", "everywhere", "--out",
         tmp_path / "r.json"): "unknown --device-map 'everywhere'",
        ("evaluate", "--model", path, "--tasks", "ppl_wiki", "--device-map", "auto", "--max-memory", "cpu=lots",
         "--out", tmp_path / "r.json"): "size 'lots' for cpu is not a size",
    }
    for args, message in cases.items():
        done = colakit(*args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() and not (tmp_path / "r.json").exists()


def test_compress_from_the_command_line_streams_and_records_its_peak_memory(tmp_path):
    from test_bad_input import colakit

    path, calib = model_dir(tmp_path, "qwen2")
    done = colakit("compress", "--model", path, "--calib", calib, "--method", "gptq", "--bits", "4", "--group-size",
                   "16", "--out", tmp_path / "o", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "o" / "compression.json").read_text())
    assert report["loading"] == "streamed" and report["peak_memory"]["host_rss_peak_mib"] > 0
    assert len(report["block_seconds"]) == 2


@pytest.mark.parametrize("stored, target, kept", [
    (torch.bfloat16, torch.float32, True),   # widens exactly: copied as stored
    (torch.float32, torch.float32, True),
    (torch.float16, torch.bfloat16, False),  # cast, chunk by chunk
    (torch.float32, torch.float16, False),
    (torch.int64, torch.float32, True),      # not floating: as stored
])
def test_tensors_outside_the_blocks_are_copied_in_chunks_as_loading_would_give_them(stored, target, kept, tmp_path):
    from safetensors.torch import load_file, save_file

    from colakit.compress.streamed import ShardWriter
    from colakit.model.checkpoint import Checkpoint

    value = (torch.randn(37, 11, generator=torch.Generator().manual_seed(0)) * 100).to(stored)
    (tmp_path / "src").mkdir()
    save_file({"model.embed_tokens.weight": value, "other": torch.ones(3)}, str(tmp_path / "src" / "model.safetensors"))
    expected = value if kept else value.to(target)
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    ShardWriter(tmp_path / "ours", 1).copy("model.embed_tokens.weight", Checkpoint(tmp_path / "src"), target, chunk=50)
    ShardWriter(tmp_path / "theirs", 1).write({"model.embed_tokens.weight": expected})
    name = "model-00001-of-00001.safetensors"
    copied = load_file(str(tmp_path / "ours" / name))["model.embed_tokens.weight"]
    assert copied.dtype == expected.dtype and torch.equal(copied, expected)
    # the very file safetensors' own writer makes
    assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "theirs" / name).read_bytes()
