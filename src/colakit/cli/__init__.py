"""Command modules register themselves on ``colakit.cli.app.app`` when imported here."""

from colakit.cli import compress, curate, data, evaluate, models, report, run  # noqa: F401
from colakit.cli.app import app, main

__all__ = ["app", "main"]
