import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Tests share one cache (real data and the default model are fetched once per CI run).
os.environ.setdefault("COLAKIT_CACHE", str(Path(__file__).resolve().parents[1] / ".colakit-cache"))


@pytest.fixture(params=["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "gpt2", "opt"])
def family(request):
    return request.param
