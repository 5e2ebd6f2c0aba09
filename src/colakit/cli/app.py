"""The ``colakit`` command: one typer app; each command group lives in its own module beside this one."""

from __future__ import annotations

import logging
import os
import sys

import typer
from rich.console import Console

from colakit.errors import ColakitError

app = typer.Typer(
    name="colakit",
    help="Curate calibration data for LLM compression, compress, evaluate and report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details and show tracebacks.")):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        os.environ["COLAKIT_TRACEBACK"] = "1"


def main() -> None:
    """Entry point: user errors print one line (no traceback unless --verbose/COLAKIT_TRACEBACK=1)."""
    import colakit.cli  # noqa: F401  (registers every command module)

    try:
        app()  # standalone: click prints usage errors itself (exit 2); our errors come through here
    except ColakitError as err:
        if os.environ.get("COLAKIT_TRACEBACK"):
            raise
        console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
