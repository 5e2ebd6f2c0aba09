"""The defaults a user sees, in one place: the Python API (``CurateConfig``), the CLI and grid configs
read them here, so ``curate(CurateConfig())`` and ``colakit curate`` build the same set.

Constants only (no imports): the CLI reads them at import time and ``colakit --help`` stays quick.
"""

DEFAULT_MODEL = "smollm2-135m"

# Curation. configs/general.yaml measured the method and sources (3 seeds, docs/results/general.md): COLA over the
# paper's five sources kept more than random C4 after SparseGPT 50% and GPTQ w4; adding the
# multilingual source (the general target probes it) kept more again after SparseGPT and as much after GPTQ.
DEFAULT_METHOD = "cola"
DEFAULT_SOURCES = ("c4", "wiki", "code", "math", "commonsense", "multilingual")
DEFAULT_N = 128  # the budget when no --compression says otherwise (Method.calibration)
DEFAULT_SEQ_LEN = 512
DEFAULT_SEED = 0
DEFAULT_FORMAT = "plain"
DEFAULT_PACKING = "pack"
DEFAULT_HELDOUT_FRACTION = 0.1
DEFAULT_TARGET = "general"

# Evaluation: the suite `colakit evaluate` and a grid's `evaluate.tasks` use when none is given.
DEFAULT_TASKS = "quick"
