"""Packed (compressed-tensors) checkpoints loaded as the plain dense models every stage expects.

transformers reads a compressed-tensors checkpoint (colakit's packed output, llm-compressor's)
through the library: asked to ``dequantize``, it decompresses the weights at load time, but leaves
each quantized linear wrapped, with a forward that quantizes the weight again on every call, its
scale and zero-point parameters beside the weight, and an offloading dispatch. Those are removed
here, so the model is dense: the same forward, state dict and ``evaluate`` model hash as the
fake-quant directory of the same run. (transformers itself drops the quantizer and the config's
``quantization_config`` of a dequantized checkpoint: the model saves like any other.)
"""

from __future__ import annotations

from compressed_tensors.base import QUANTIZATION_METHOD
from compressed_tensors.offload import remove_dispatch
from compressed_tensors.quantization import QuantizationMetadata
from transformers import AutoConfig, AutoModelForCausalLM


def packed_config(where: str):
    """The model config of a compressed-tensors checkpoint, set to decompress on load; None for any other."""
    config = AutoConfig.from_pretrained(where)
    quantization = getattr(config, "quantization_config", None)
    if not isinstance(quantization, dict) or quantization.get("quant_method") != QUANTIZATION_METHOD:
        return None
    config.quantization_config = {**quantization, "dequantize": True}
    return config


def load_packed(where: str, config, dtype):
    """Load the checkpoint ``packed_config`` recognised, decompressed into plain dense modules."""
    model = AutoModelForCausalLM.from_pretrained(where, config=config, dtype=dtype)
    remove_dispatch(model)
    for module in model.modules():
        if hasattr(module, "quantization_scheme"):
            QuantizationMetadata.clear_quantization(module)  # the re-quantizing forward and the scales
            del module.quantization_status
            # decompressing registers ``weight`` anew, after ``bias``: put it first again, as nn.Linear
            # does (state dicts and evaluate's model hash go by that order)
            for key in [k for k in module._parameters if k != "weight"]:
                module._parameters[key] = module._parameters.pop(key)
    return model
