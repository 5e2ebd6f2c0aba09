"""``colakit models ...``: fetch and list models."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from colakit.cli.app import app, console, escape, json_option, out, print_json
from colakit.defaults import DEFAULT_MODEL

models_app = typer.Typer(help="Fetch and list models.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def list_models(as_json: bool = json_option()):
    """Built-in model ids and whether they are cached."""
    from colakit.model.load import BUILTIN_MODELS, DEFAULT_MODEL, _cached_ok, _model_dir

    rows = [{"id": mid, "default": mid == DEFAULT_MODEL, "cached": _cached_ok(_model_dir(mid)),
             "description": spec.description} for mid, spec in BUILTIN_MODELS.items()]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "cached", "description")
    for r in rows:
        table.add_row(r["id"] + (" (default)" if r["default"] else ""), "yes" if r["cached"] else "no",
                      escape(r["description"]))
    out.print(table)


@models_app.command("fetch")
def fetch(name: str = typer.Argument(DEFAULT_MODEL, help="Built-in model id."), as_json: bool = json_option()):
    """Fetch, convert (GGUF -> safetensors), verify and cache a built-in model."""
    from colakit.model.load import fetch_model

    t0 = time.time()
    with console.status(f"fetching {escape(name)} (first time: download + conversion, about a minute)"):
        path = fetch_model(name)
    console.print(f"{escape(name)}: {escape(path)} ({time.time() - t0:.1f}s)")
    if as_json:
        print_json({"model": name, "path": str(path), "seconds": round(time.time() - t0, 3)})
        return
    print(path)
