"""Every script in examples/ runs on the real default model with its own small budgets, so none rots.

Each runs in a subprocess into a temporary directory; an example whose optional package is not
installed skips, saying which and how to install it. Marked integration (real model and data).
"""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent
TIMEOUT = 900  # seconds per example: a stuck example fails instead of hanging CI


# Each example compresses the whole 30-block model on tiny budgets. On this 2-core machine, otherwise
# idle (load 1.4), `pytest -s tests/test_examples.py` took 245 s in all: own_data.py 21.8 s,
# targeted_math.sh 82.0 s, compare_three.sh 110.7 s, ray_curate.sh 30.6 s (each test prints its time;
# under load the same run took 6.7 min, compare_three.sh 205 s at load 2.4).
# cola_oneshot.py runs llm-compressor's oneshot, which only runs where llmcompressor is installed (not in CI);
# it is also behind COLAKIT_SLOW_EXAMPLES=1, since its time here is not measured.
slow = pytest.mark.skipif(not os.environ.get("COLAKIT_SLOW_EXAMPLES"),
                          reason="runs llm-compressor's oneshot on the whole default model: "
                                 "set COLAKIT_SLOW_EXAMPLES=1 to run it")


def _needs(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: pip install 'colakit[{extra}]' to run this example")


def _run(argv: list[str], tmp_path: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "COLAKIT": str(BIN / "colakit"), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.setdefault("COLAKIT_CACHE", str(ROOT / ".colakit-cache"))
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    took = time.perf_counter() - started
    print(f"{Path(argv[1]).name}: {took:.1f} s")
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _manifest(calib: Path) -> dict:
    assert (calib / "samples.jsonl").exists() and (calib / "manifest.json").exists(), f"no CalibrationSet at {calib}"
    return json.loads((calib / "manifest.json").read_text())


def test_own_data(tmp_path):
    out = tmp_path / "own"
    log = _run([sys.executable, str(EXAMPLES / "own_data.py"), "--out", str(out)], tmp_path)
    manifest = _manifest(out / "calib")
    assert manifest["n"] == 16 and manifest["method"] == "mix-uniform"
    assert "my_docs.jsonl" in json.dumps(manifest), "the user source is not recorded in the manifest"
    assert "calibration set:" in log


def test_targeted_math(tmp_path):
    out = tmp_path / "math"
    log = _run(["bash", str(EXAMPLES / "targeted_math.sh"), str(out)], tmp_path)
    assert _manifest(out / "calib")["target"] == "math"
    assert (out / "gptq-w4" / "compression.json").exists()
    results = json.loads((out / "retention.json").read_text())
    assert {"ppl_math", "ppl_wiki"} <= set(results["tasks"]), results["tasks"].keys()
    assert "retention report:" in log


def test_compare_three(tmp_path):
    out = tmp_path / "grid"
    log = _run(["bash", str(EXAMPLES / "compare_three.sh"), str(out)], tmp_path)
    assert (out / "results.csv").exists()
    assert (out / "report.html").exists() and (out / "report.md").exists()
    summary = (out / "report.md").read_text()
    for curation in ("random-c4", "mix-uniform", "cola"):
        assert curation in summary, f"{curation} missing from the report"
    assert "3 cell(s) ok, 0 failed" in log


def test_ray_curate(tmp_path):
    _needs("ray", "ray")
    out = tmp_path / "ray"
    _run(["bash", str(EXAMPLES / "ray_curate.sh"), str(out)], tmp_path)
    _manifest(out / "calib")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 8 and summary["method"] == "cola", summary


@slow
def test_cola_oneshot(tmp_path):
    _needs("llmcompressor", "llmcompressor")
    out = tmp_path / "oneshot"
    log = _run([sys.executable, str(EXAMPLES / "cola_oneshot.py"), "--out", str(out)], tmp_path)
    _manifest(out / "calib")
    assert (out / "gptq-w4" / "config.json").exists()
    assert "quantization_config" in json.loads((out / "gptq-w4" / "config.json").read_text())
    assert "retention" in log and (out / "retention.json").exists()
