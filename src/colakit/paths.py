"""Checks on a path a command is about to write, made before any expensive work (a model load).

Every ``--out``-style option goes through ``check_output``, so each command refuses the same
things in the same words: a path inside a file, a folder that cannot be created or written, a
directory where a file goes (or a file where a directory goes), and an existing output the
command did not write itself, unless ``--overwrite`` (as pip, git and huggingface-cli refuse to
clobber). ``output_dir`` then writes a replacement directory beside the old one and swaps it in
only once complete.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from colakit.cache import replace_dir
from colakit.errors import ColakitError


def check_output(path: str | Path, *, directory: bool = False, overwrite: bool = False,
                 ours: Callable[[Path], bool] | None = None, what: str = "an output of this command",
                 option: str = "--out", example: str = "results.json", resume: bool = False) -> Path:
    """``path`` if the command may write it there; else a ColakitError naming the problem and the fix.

    ``directory``: the output is a directory (else a file). ``ours(path)``: an existing output of
    this command; a file of ours is rewritten without --overwrite (a rerun), a directory is replaced
    only with --overwrite, and a non-empty directory that is not ours never is. ``resume``: an
    existing directory is reused (``colakit run`` resumes one). ``what`` names the output in messages.
    """
    path = Path(path).expanduser()
    found = next(p for p in (path, *path.parents) if p.exists())  # parents end at "." or "/"
    if found != path and not found.is_dir():
        raise ColakitError(f"{option} {path} is inside {found}, which is a file",
                           f"choose a {option} outside that file")
    if found == path:
        if directory and not path.is_dir():
            raise ColakitError(f"{option} {path} is a file, not a directory", f"choose a new directory for {option}")
        if not directory and path.is_dir():
            raise ColakitError(f"{option} {path} is a directory", f"name a file, e.g. {option} {path / example}")
        mine = ours is not None and ours(path)
        if directory and not resume:
            if not overwrite:
                raise ColakitError(f"output directory {path} already exists",
                                   f"pass --overwrite to replace it, or choose another {option}")
            if not mine and any(path.iterdir()):
                raise ColakitError(f"{path} exists and is not {what}",
                                   f"refusing to replace it, even with --overwrite: choose another {option}")
        if not directory and not (mine or overwrite):
            raise ColakitError(f"{option} {path} already exists and is not {what}",
                               f"pass --overwrite to replace it, or choose another {option}")
    # where the first write lands: inside a resumed directory, else beside the output
    _check_writable(path if resume and path.is_dir() else path.parent if found == path else found, path, option)
    return path


def _check_writable(folder: Path, path: Path, option: str) -> None:
    """Create and delete a file in ``folder``: the only sure test (root passes os.access, /proc refuses)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".colakit-probe.", dir=folder)
    except OSError as err:
        raise ColakitError(f"cannot write {option} {path}: {folder} is not writable ({err.strerror})",
                           f"choose a {option} in a folder you can write") from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def output_dir(out: Path) -> Iterator[Path]:
    """Where to write the directory ``out``: ``out`` itself when it is new; else (--overwrite, checked
    by ``check_output``) a fresh name beside it, swapped over the old one only once complete."""
    out = Path(out)
    if not out.exists():
        yield out
        return
    staging = out.with_name(f".{out.name}.{secrets.token_hex(4)}.new")
    try:
        yield staging
        replace_dir(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def head(path: Path, size: int = 4096) -> str:
    """The first ``size`` bytes of a file as text (to recognise a file colakit wrote); "" if unreadable."""
    try:
        with open(path, "rb") as f:
            return f.read(size).decode("utf-8", errors="replace")
    except OSError:
        return ""
