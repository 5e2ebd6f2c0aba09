"""``colakit models ...``: fetch and list models."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from colakit.cli.app import app, console, out

models_app = typer.Typer(help="Fetch and list models.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def list_models():
    """Built-in model ids and whether they are cached."""
    from colakit.model.load import BUILTIN_MODELS, DEFAULT_MODEL, _cached_ok, _model_dir

    table = Table("id", "cached", "description")
    for mid, spec in BUILTIN_MODELS.items():
        table.add_row(mid + (" (default)" if mid == DEFAULT_MODEL else ""),
                      "yes" if _cached_ok(_model_dir(mid)) else "no", spec.description)
    out.print(table)


@models_app.command("fetch")
def fetch(name: str = typer.Argument("smollm2-135m", help="Built-in model id.")):
    """Fetch, convert (GGUF -> safetensors), verify and cache a built-in model."""
    from colakit.model.load import fetch_model

    t0 = time.time()
    with console.status(f"fetching {name} (first time: download + conversion, about a minute)"):
        path = fetch_model(name)
    console.print(f"{name}: {path} ({time.time() - t0:.1f}s)")
    print(path)
