"""Where the decoder layers of a model are. Every stage asks this module, and only this module.

Decoder-only models in transformers share one shape: embeddings, a list of identical decoder
blocks, a final norm, an LM head. The names differ by family, so the lookup tries the known
paths first (LLaMA, Mistral, Qwen2/3, Gemma2/3, Phi-3: ``model.layers``; GPT-2: ``transformer.h``;
OPT: ``model.decoder.layers``; multimodal wrappers: ``model.language_model.layers``) and then
falls back to the longest ModuleList of identical blocks.

Inside a block, ``BlockSpec`` names the linears by role, which AWQ needs (linears that share one
input, and the op before them that scales can be folded into). GPT-2's ``Conv1D`` stores its
weight transposed; ``weight_matrix`` hides that so algorithms always see ``[out, in]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from colakit.errors import ColakitError

try:  # GPT-2 style models use a transposed linear
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover
    Conv1D = ()  # type: ignore[assignment]

LAYER_PATHS = (
    "model.layers",
    "model.language_model.layers",
    "model.language_model.model.layers",
    "language_model.model.layers",
    "model.decoder.layers",
    "transformer.h",
    "transformer.layers",
    "gpt_neox.layers",
)
FINAL_NORM_PATHS = (
    "model.norm",
    "model.language_model.norm",
    "model.decoder.final_layer_norm",
    "transformer.ln_f",
    "transformer.norm_f",
    "gpt_neox.final_layer_norm",
)

# Roles inside a block, tried in order. Each entry lists dotted names relative to the block.
_ATTN_NORM = ("input_layernorm", "ln_1", "self_attn_layer_norm", "attention_norm")
_ATTN_IN = (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
            ("self_attn.qkv_proj",), ("attn.c_attn",), ("attention.query_key_value",))
_ATTN_V = ("self_attn.v_proj",)
_ATTN_OUT = ("self_attn.o_proj", "self_attn.out_proj", "attn.c_proj", "self_attn.dense", "attention.dense")
# Gemma2/3 have both post_attention_layernorm (applied to the attention output) and
# pre_feedforward_layernorm (the MLP input): the MLP-input norm must win.
_MLP_NORM = ("pre_feedforward_layernorm", "post_attention_layernorm", "ln_2", "final_layer_norm")
_MLP_IN = (("mlp.gate_proj", "mlp.up_proj"), ("mlp.gate_up_proj",), ("mlp.c_fc",), ("fc1",),
           ("mlp.dense_h_to_4h",))
_MLP_UP = ("mlp.up_proj",)
_MLP_OUT = ("mlp.down_proj", "mlp.c_proj", "fc2", "mlp.dense_4h_to_h")
# The four inputs a block's linears multiply, each shared by a group: q/k/v read the attention
# norm's output, o the attention's, gate/up the MLP norm's, down the MLP activation.
INPUT_SITES = ("attn_in", "attn_out", "mlp_in", "mlp_out")


def get_submodule(root: nn.Module, path: str) -> nn.Module | None:
    mod = root
    for part in path.split("."):
        if not hasattr(mod, part):
            return None
        mod = getattr(mod, part)
    return mod if isinstance(mod, nn.Module) else None


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (bool(Conv1D) and isinstance(module, Conv1D))


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The weight as ``[out_features, in_features]`` (a view for Conv1D, which stores it transposed)."""
    return module.weight.t() if (Conv1D and isinstance(module, Conv1D)) else module.weight


def set_weight_matrix(module: nn.Module, w: torch.Tensor) -> None:
    """Write an ``[out, in]`` matrix back into ``module`` in its own layout and dtype."""
    target = module.weight
    src = w.t() if (Conv1D and isinstance(module, Conv1D)) else w
    target.data.copy_(src.to(target.dtype))


def in_features(module: nn.Module) -> int:
    return weight_matrix(module).shape[1]


@dataclass
class BlockSpec:
    """Linears of one decoder block by role. Names are relative to the block."""

    attn_norm: str | None
    attn_in: tuple[str, ...]
    attn_v: str | None
    attn_out: str | None
    mlp_norm: str | None
    mlp_in: tuple[str, ...]
    mlp_up: str | None
    mlp_out: str | None
    linears: dict[str, nn.Module] = field(repr=False, default_factory=dict)


@dataclass
class DecoderLayout:
    """The parts of a decoder-only model that the stages need."""

    model: nn.Module
    layers_path: str
    layers: nn.ModuleList
    final_norm: nn.Module | None

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def linears(self, index: int) -> dict[str, nn.Module]:
        """Every linear sublayer of block ``index``, by name relative to the block, in order."""
        return block_linears(self.layers[index])

    def spec(self, index: int) -> BlockSpec:
        return block_spec(self.layers[index])

    def input_sites(self, index: int, fix: str) -> dict[str, tuple[str, ...]]:
        """Block ``index``'s linears by the INPUT_SITES input they share, or a ColakitError with ``fix``
        when a role is not found (a feature or trial that reads all four cannot run without it)."""
        spec = self.spec(index)
        groups = dict(zip(INPUT_SITES, (spec.attn_in, (spec.attn_out,) if spec.attn_out else (),
                                        spec.mlp_in, (spec.mlp_out,) if spec.mlp_out else ())))
        missing = [site for site, names in groups.items() if not names]
        if missing:
            raise ColakitError(f"cannot find the {', '.join(missing)} linears of block {index}", fix)
        return groups


def block_linears(block: nn.Module) -> dict[str, nn.Module]:
    return {name: mod for name, mod in block.named_modules() if name and is_linear(mod)}


def _first(block: nn.Module, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if get_submodule(block, n) is not None), None)


def _first_group(block: nn.Module, groups) -> tuple[str, ...]:
    for group in groups:
        if all(get_submodule(block, n) is not None for n in group):
            return tuple(group)
    return ()


def block_spec(block: nn.Module) -> BlockSpec:
    return BlockSpec(
        attn_norm=_first(block, _ATTN_NORM),
        attn_in=_first_group(block, _ATTN_IN),
        attn_v=_first(block, _ATTN_V),
        attn_out=_first(block, _ATTN_OUT),
        mlp_norm=_first(block, _MLP_NORM),
        mlp_in=_first_group(block, _MLP_IN),
        mlp_up=_first(block, _MLP_UP),
        mlp_out=_first(block, _MLP_OUT),
        linears=block_linears(block),
    )


def _generic_layers(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The longest ModuleList of >=1 same-class blocks that contain linears."""
    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0:
            classes = {type(m) for m in mod}
            if len(classes) == 1 and block_linears(mod[0]):
                if best is None or len(mod) > len(best[1]):
                    best = (name, mod)
    return best


def find_decoder(model: nn.Module) -> DecoderLayout:
    """Locate the decoder blocks of ``model`` or raise a ColakitError naming what was tried."""
    for path in LAYER_PATHS:
        mod = get_submodule(model, path)
        if isinstance(mod, nn.ModuleList) and len(mod) > 0:
            layers_path, layers = path, mod
            break
    else:
        found = _generic_layers(model)
        if found is None:
            raise ColakitError(
                f"cannot find the decoder layers of {type(model).__name__}: looked for "
                f"{', '.join(LAYER_PATHS)} and any ModuleList of identical blocks with linear layers",
                "colakit supports decoder-only transformers (LLaMA, Mistral, Qwen2/3, Gemma2/3, "
                "Phi-3, GPT-2, OPT); add the path to colakit.model.layers.LAYER_PATHS for another family",
            )
        layers_path, layers = found
    if not block_linears(layers[0]):
        raise ColakitError(
            f"the blocks at {layers_path} of {type(model).__name__} contain no linear layers",
            "this model's layers cannot be compressed or probed by colakit",
        )
    final_norm = next((m for p in FINAL_NORM_PATHS if (m := get_submodule(model, p)) is not None), None)
    return DecoderLayout(model=model, layers_path=layers_path, layers=layers, final_norm=final_norm)
