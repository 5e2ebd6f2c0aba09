"""Post-training compression of decoder LLMs, calibrated by a CalibrationSet.

Built-in methods run block by block on CPU or CUDA (``engine``): SparseGPT (optionally with joint
quantization), Wanda, GPTQ, AWQ, and the data-free baselines magnitude pruning and round-to-
nearest, one file each in ``methods`` (which says how to add one). ``output`` writes the
compressed directory, quantized weights packed in the compressed-tensors format (``packed``) or
dequantized (fake-quant); ``llmcompressor_backend`` hands the same data to llm-compressor.

    from colakit.compress import CompressionConfig, compress
    report = compress(model, input_ids, attention_mask, CompressionConfig("gptq", bits=4, group_size=64))
"""

from colakit.compress.config import CompressionConfig
from colakit.compress.engine import CompressionReport, compress
from colakit.compress.hessian import NumericalWarning
from colakit.compress.methods import METHODS, Method, auto_group_size, get_method, register_method, suggest_group_size
from colakit.compress.output import compress_to_dir, save_compressed

__all__ = ["METHODS", "CompressionConfig", "CompressionReport", "Method", "NumericalWarning", "auto_group_size",
           "compress", "compress_to_dir", "get_method", "register_method", "save_compressed", "suggest_group_size"]
