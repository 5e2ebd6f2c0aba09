"""One place for defaults: the Python API, grid configs and the CLI build the same thing when told nothing."""

import typer

from colakit import defaults
from colakit.cli import app
from colakit.curate.pipeline import CurateConfig, defaults_for
from colakit.grid import parse_grid
from colakit.grid.runner import curate_config
from colakit.model import load

CURATE = {"model": defaults.DEFAULT_MODEL, "method": defaults.DEFAULT_METHOD, "sources": defaults.DEFAULT_SOURCES,
          "seed": defaults.DEFAULT_SEED, "format": defaults.DEFAULT_FORMAT, "packing": defaults.DEFAULT_PACKING,
          "heldout_fraction": defaults.DEFAULT_HELDOUT_FRACTION, "target": defaults.DEFAULT_TARGET,
          "n": defaults.DEFAULT_N, "seq_len": defaults.DEFAULT_SEQ_LEN}


def cli_defaults(*command: str) -> dict:
    """The click parameters' defaults of ``colakit COMMAND`` (by parameter name)."""
    cmd = typer.main.get_command(app)
    for name in command:
        cmd = cmd.commands[name]
    return {p.name: p.default for p in cmd.params}


def test_the_api_uses_the_defaults():
    cfg = CurateConfig()
    assert {k: getattr(cfg, k) for k in CURATE} == CURATE
    assert defaults_for(None) == {"n": defaults.DEFAULT_N, "seq_len": defaults.DEFAULT_SEQ_LEN}
    assert load.DEFAULT_MODEL == defaults.DEFAULT_MODEL  # the model module re-exports it


def test_a_grid_uses_the_defaults():
    grid = parse_grid({"curation": {"c": {"method": defaults.DEFAULT_METHOD}},
                       "compression": {"g": {"method": "gptq", "bits": 4}}})
    assert grid.model == defaults.DEFAULT_MODEL and grid.evaluate["tasks"] == defaults.DEFAULT_TASKS
    cfg = curate_config(grid, grid.cells()[0])
    assert {k: getattr(cfg, k) for k in CURATE} == CURATE


def test_the_cli_uses_the_defaults():
    curate = cli_defaults("curate")
    assert curate["sources"] == ",".join(defaults.DEFAULT_SOURCES)
    for key in ("model", "method", "seed", "heldout_fraction", "packing", "target"):
        assert curate[key] == CURATE[key], key
    assert curate["fmt"] == defaults.DEFAULT_FORMAT
    assert curate["n"] is None and curate["seq_len"] is None  # resolved by defaults_for (per --compression)
    assert curate["compression"] is None
    evaluate = cli_defaults("evaluate")
    assert evaluate["model"] == defaults.DEFAULT_MODEL and evaluate["suite"] == defaults.DEFAULT_TASKS
    assert evaluate["seed"] == defaults.DEFAULT_SEED
    assert cli_defaults("compress")["model"] == defaults.DEFAULT_MODEL
    assert cli_defaults("models", "fetch")["name"] == defaults.DEFAULT_MODEL
