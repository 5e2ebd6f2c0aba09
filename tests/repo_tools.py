"""The repository's tools/ scripts, imported as modules for the tests (they are not part of the package)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def results_tool():
    """tools/results.py: README/docs figures from results snapshots, snapshot and restore."""
    spec = importlib.util.spec_from_file_location("results_tool", ROOT / "tools" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
