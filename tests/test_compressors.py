"""A CalibrationSet into the compressors users run: llm-compressor, GPTQModel, auto-round.

llm-compressor's ``oneshot(dataset=calib.to_dataset())`` is run end to end by
``test_compress_backend.py::test_sparsegpt_2of4_with_bits_end_to_end_keeps_the_pattern`` and
``test_examples.py::test_cola_oneshot`` (both skip without the extra); here only the modifiers of
docs/compression.md are built. Each test skips when its package is not installed.
"""

import pytest
import torch

from colakit.calibset import CalibrationSet
from colakit.errors import ColakitError


def _calib(lengths, tok=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return CalibrationSet.from_token_ids([torch.randint(3, 256, (n,), generator=g).tolist() for n in lengths],
                                         tokenizer=tok)


def test_to_samples_is_what_gptqmodel_takes():
    """GPTQModel's quantize(calibration=...) takes dicts of int lists (gptqmodel/utils/calibration.py)."""
    calib = _calib((32, 32, 9, 1))
    samples = calib.to_samples()
    assert len(samples) == len(calib)
    for s, row in zip(calib.samples, samples):
        # no "text" key: GPTQModel would tokenise it instead of using input_ids
        assert set(row) == {"input_ids", "attention_mask"}
        assert row["input_ids"] == s.input_ids and all(type(t) is int for t in row["input_ids"])
        assert row["attention_mask"] == [1] * len(s.input_ids)
    samples[0]["input_ids"][0] = -1  # the caller's copy, not the set's
    assert calib.samples[0].input_ids[0] != -1 and calib.to_samples()[0]["input_ids"][0] != -1
    assert [r["input_ids"] for r in calib.to_samples()] == calib.to_dataset()["input_ids"]  # the rows oneshot gets


def test_to_autoround_pads_to_the_longest_and_uses_every_sample():
    calib = _calib((32, 32, 20))
    args = calib.to_autoround(pad_token_id=0)
    assert args["nsamples"] == 3 and args["seqlen"] == 32 and len(args["dataset"]) == 3
    for s, row in zip(calib.samples, args["dataset"]):
        assert row["input_ids"].shape == row["attention_mask"].shape == (1, 32)
        assert row["input_ids"].dtype == torch.long
        n = len(s.input_ids)
        assert row["input_ids"][0, :n].tolist() == s.input_ids and (row["input_ids"][0, n:] == 0).all()
        assert row["attention_mask"][0].tolist() == [1] * n + [0] * (32 - n)
    args["dataset"][0]["attention_mask"][:, -1] = 0  # what auto-round does to the masks it is given
    assert calib.to_autoround(pad_token_id=0)["dataset"][0]["attention_mask"][0, -1] == 1
    with pytest.raises(ColakitError, match="pad_token_id"):
        calib.to_autoround()
    assert _calib((16, 16)).to_autoround()["seqlen"] == 16  # one length: nothing to pad


def test_llmcompressor_recipes_of_the_docs_build():
    """The GPTQModifier and AWQModifier recipes that docs/compression.md hands to_dataset() with."""
    pytest.importorskip("llmcompressor", reason="llm-compressor is an optional extra: pip install 'colakit[llmcompressor]'")
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    def w4(group_size=64, symmetric=True):
        return {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "strategy": "group",
                                                               "group_size": group_size, "symmetric": symmetric}}}

    gptq = GPTQModifier(config_groups=w4(), ignore=["lm_head"])
    awq = [AWQModifier(), QuantizationModifier(config_groups=w4(symmetric=False), ignore=["lm_head"])]
    assert gptq.config_groups["group_0"].weights.group_size == 64
    assert awq[1].config_groups["group_0"].weights.symmetric is False


def test_autoround_quantizes_on_exactly_the_sets_tokens(tmp_path):
    """AutoRound on CPU, a tiny LLaMA: it sees every sample's tokens, in order, and writes a 4-bit model."""
    pytest.importorskip("auto_round", reason="auto-round is an optional extra: pip install 'colakit[autoround]'")
    import json

    from auto_round import AutoRound
    from test_compress_cli import word_tokenizer
    from tiny_models import tiny_model

    tok = word_tokenizer()
    model = tiny_model("llama")  # hidden 64, intermediate 128: groups of 32 divide every linear
    calib = _calib((32, 32, 32, 20), tok)
    args = calib.to_autoround(tok.pad_token_id)
    want, _ = calib.to_tensors(tok.pad_token_id)
    seen = []
    hook = model.model.embed_tokens.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].clone()))
    dense = model.model.layers[0].self_attn.q_proj.weight.detach().clone()

    ar = AutoRound(model, tok, **args, iters=2, bits=4, group_size=32, sym=True, batch_size=4, device_map="cpu")
    quantized, layers = ar.quantize()
    hook.remove()
    assert len(seen) == len(calib)  # one forward per sample, none skipped, nothing re-sampled
    assert torch.equal(torch.cat(seen), want)
    assert len(layers) == 14  # 7 linears in each of the 2 blocks; the LM head stays dense
    w = quantized.model.layers[0].self_attn.q_proj.weight.detach()
    assert not torch.equal(w, dense)
    assert max(len(torch.unique(group)) for group in w.reshape(-1, 32)) <= 16  # a 4-bit grid per group

    out = tmp_path / "ar-w4"
    ar.save_quantized(str(out), format="auto_round", inplace=True)
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (config["quant_method"], config["bits"], config["group_size"]) == ("auto-round", 4, 32)


def test_gptqmodel_quantizes_on_exactly_the_sets_tokens(tmp_path, monkeypatch):
    """GPTQModel's quantize(calibration=calib.to_samples()) on CPU, a tiny LLaMA: every sample, in order."""
    import json
    import os

    # GPTQModel 7.7 asks for 2 model-loader workers but gives a 2-core machine 1 CPU worker, and
    # refuses to start ("Virtual pool 'model_loader:cpu' requests 2 workers but parent 'cpu' only has 1")
    monkeypatch.setenv("GPTQMODEL_CPU_WORKERS", os.environ.get("GPTQMODEL_CPU_WORKERS", "2"))
    pytest.importorskip("gptqmodel", reason="GPTQModel is not installed: pip install gptqmodel==7.7.0 "
                                            "(torch 2.14.1, transformers>=5.20.2; see docs/compression.md)")
    from gptqmodel import GPTQConfig, GPTQModel

    monkeypatch.chdir(tmp_path)  # GPTQModel writes a logs/ folder into the working directory
    from test_compress_cli import word_tokenizer
    from tiny_models import tiny_model

    tok = word_tokenizer()
    model_dir, out = tmp_path / "tiny", tmp_path / "gptq-w4"
    tiny_model("llama").save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    calib = _calib((32, 32, 32, 12), tok)  # GPTQModel 7.7 drops samples of 10 tokens or fewer, whatever it is told
    # the first quantize on a machine compiles GPTQModel's CPU packing extension (a minute on 2 cores, then cached)
    model = GPTQModel.load(str(model_dir), GPTQConfig(bits=4, group_size=32), device="cpu")
    seen = []
    model.model.model.embed_tokens.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].clone()))
    model.quantize(calibration=calib.to_samples(), calibration_sort=None, batch_size=1)
    assert [ids[0].tolist() for ids in seen] == [s.input_ids for s in calib.samples]
    model.save(str(out))
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (config["quant_method"], config["bits"], config["group_size"]) == ("gptq", 4, 32)
