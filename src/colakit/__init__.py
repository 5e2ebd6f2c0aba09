"""colakit: calibration data curation for post-training LLM compression.

Data flow (docs/architecture.md has the contracts):
    sources -> process -> features -> select -> CalibrationSet -> compress -> evaluate -> report
"""

__version__ = "0.1.0"

from colakit.errors import ColakitError  # noqa: E402

__all__ = ["ColakitError", "__version__"]
