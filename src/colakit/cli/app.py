"""The ``colakit`` command: one typer app; each command group lives in its own module beside this one.

Streams, as pip, git and lm-eval use them: results (tables, listings, JSON, the paths a command
made) go to standard output through ``out``; logs, progress, warnings and errors go to standard
error through ``console``. Text a user gave (paths, names, messages quoting them) goes through
``escape`` before rich prints it, so square brackets in it are printed, not read as markup.
With ``--json`` a command prints its result as one JSON document (``print_json``), the only thing
on stdout. Every ``--out`` is checked by ``colakit.paths.check_output`` before any work starts.

Exit codes: 0 success; 1 an unexpected failure (a bug: one line, ``-v`` for the traceback);
2 a usage error or bad input (the message names the problem and the fix); 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import typer
import yaml
from rich.console import Console
from rich.markup import escape as _escape

from colakit import __version__
from colakit.errors import ColakitError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

app = typer.Typer(
    name="colakit",
    help="Curate calibration data for LLM compression, compress, evaluate and report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    epilog="Exit codes: 0 ok, 1 failure, 2 usage error or bad input, 130 interrupted.",
)
console = Console(stderr=True)  # logs, progress, warnings, errors
out = Console()  # results


def escape(text) -> str:
    """``text`` as rich prints it verbatim (``[v2]`` stays ``[v2]``)."""
    return _escape(str(text))


def json_option():
    return typer.Option(False, "--json", help="Print the result as one JSON document on stdout (logs stay on stderr).")


def device_map_option():
    return typer.Option(None, "--device-map", help="Spread a model larger than one device over the GPUs, the CPU "
                        "and disk, as accelerate does: auto, balanced, balanced_low_0 or sequential.")


def max_memory_option():
    return typer.Option(None, "--max-memory", help="Memory cap per device, accelerate's way: 0=20GiB,cpu=64GiB "
                        "(with --device-map; for compress, the room one decoder block gets). A cap below one "
                        "block's weights is refused before any work.")


def print_json(obj) -> None:
    """A command's result under --json: one JSON document, the only thing on stdout."""
    print(json.dumps(obj, indent=2, default=str))


def parse_params(items: list[str], example: str) -> dict:
    """``--param NAME=VALUE`` options as a dict, each value read as a YAML scalar (``2`` -> 2, ``fast`` -> "fast")."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ColakitError(f"cannot read --param {item!r}", f"write it as NAME=VALUE, e.g. --param {example}")
        out[name.strip()] = yaml.safe_load(value)
    return out


def _version(value: bool) -> None:
    if value:
        print(f"colakit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details and show tracebacks."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print colakit's version and exit.")):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        os.environ["COLAKIT_TRACEBACK"] = "1"


def _fail(message: str, code: int) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def main() -> None:
    """Entry point: every error is one line on stderr and an exit code (a traceback only with -v).

    typer itself prints usage errors (exit 2) and turns Ctrl-C into exit 130; what reaches here is
    colakit's own errors (bad input: exit 2) and anything unexpected (exit 1).
    """
    import colakit.cli  # noqa: F401  (registers every command module)

    # the libraries' own tqdm bars (compressed-tensors, datasets, transformers) would interleave with
    # colakit's progress and flood a log file off a terminal; colakit reports every stage itself
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        app()
    except ColakitError as err:
        if os.environ.get("COLAKIT_TRACEBACK"):
            raise
        _fail(str(err), EXIT_BAD_INPUT)
    except Exception as err:  # noqa: BLE001 -- a bug: one line, the traceback behind -v
        if os.environ.get("COLAKIT_TRACEBACK"):
            raise
        _fail(f"{type(err).__name__}: {err} (a colakit bug: rerun with -v for the traceback, and please report it)",
              EXIT_FAILURE)
