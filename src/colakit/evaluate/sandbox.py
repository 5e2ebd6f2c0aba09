"""Run untrusted (model-written) Python in a separate, fenced process.

Layers, from the outside in:
- the process: a fresh ``python -I`` (isolated mode: no user site, no PYTHON* variables) in its
  own session/process group, killed as a group on timeout, with a scratch temp dir as cwd and
  HOME/TMPDIR, and a minimal environment;
- the kernel: ``resource.setrlimit`` caps address space (memory), CPU seconds, file size,
  open files and processes (RLIMIT_NPROC, so a fork bomb fails); no core dumps;
- the network: a new, empty network namespace (``unshare -n``, or ``unshare -rn`` as a normal
  user) when the machine allows it; socket creation is refused in any case (below);
- the interpreter: an audit hook (PEP 578, cannot be removed once installed) refuses sockets,
  subprocesses, ``os.system``/``exec``/``fork``, ctypes, and any write, delete, rename or
  permission change outside the scratch directory.

The program's exit status decides pass or fail; the result records why it failed.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from colakit.errors import ColakitError

# Installed first in the child, before the untrusted code runs. ``ROOT`` is the scratch dir.
_GUARD = r'''
import os, sys
ROOT = os.path.realpath(os.getcwd())
_BLOCKED = ("socket.", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
            "os.forkpty", "pty.", "ctypes.", "os.kill", "os.killpg", "signal.pthread_kill", "winreg.", "sys.addaudithook",
            "webbrowser.", "urllib.Request", "http.client.connect", "ftplib.", "smtplib.", "imaplib.", "poplib.",
            "telnetlib.", "os.putenv", "os.unsetenv", "fcntl.", "resource.setrlimit", "os.chroot")
_PATH_EVENTS = {"os.remove": (0,), "os.unlink": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.replace": (0, 1),
                "os.mkdir": (0,), "os.chmod": (0,), "os.chown": (0,), "os.link": (0, 1), "os.symlink": (0, 1),
                "os.truncate": (0,), "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.move": (1,),
                "os.utime": (0,), "os.removexattr": (0,), "os.setxattr": (0,), "os.chflags": (0,)}
def _inside(path):
    if isinstance(path, int):
        return True  # an already-open descriptor
    try:
        p = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return p == ROOT or p.startswith(ROOT + os.sep)
def _hook(event, args):
    if event.startswith(_BLOCKED):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
        path, mode, flags = args[0], args[1], args[2]
        writes = (mode is not None and any(c in str(mode) for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
        if writes and path is not None and not _inside(path):
            raise PermissionError(f"sandbox: writing {path!r} outside the scratch directory is not allowed")
    elif event in _PATH_EVENTS:
        for i in _PATH_EVENTS[event]:
            if i < len(args) and args[i] is not None and not _inside(args[i]):
                raise PermissionError(f"sandbox: {event} on {args[i]!r} outside the scratch directory is not allowed")
sys.addaudithook(_hook)
del _hook
__name__ = "__main__"
with open("program.py", encoding="utf-8") as _f:
    _src = _f.read()
_code = compile(_src, "program.py", "exec")
del _f, _src
exec(_code, {"__name__": "__main__", "__builtins__": __builtins__})
'''


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock
    memory_mb: int = 1024  # address space
    max_processes: int = 64  # RLIMIT_NPROC (counts every process of the user; see _nproc_limit)
    max_file_mb: int = 16
    max_open_files: int = 64
    max_output_chars: int = 2000


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    status: str  # "passed", "failed", "timeout", "killed" (a signal, e.g. memory), "error"
    returncode: int | None
    output: str  # stdout+stderr tail
    seconds: float


@functools.lru_cache(maxsize=1)
def network_isolation() -> tuple[str, ...]:
    """The command prefix that gives a child an empty network namespace here, or () if none works."""
    if not shutil.which("unshare"):
        return ()
    for prefix in (("unshare", "-n"), ("unshare", "-rn")):
        try:
            probe = subprocess.run([*prefix, sys.executable, "-c", "import socket;socket.create_connection"],
                                   capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


def _nproc_limit(extra: int) -> int:
    """RLIMIT_NPROC counts all processes (threads) of this user: allow what runs now plus ``extra``."""
    try:
        uid = os.getuid()
        running = sum(_threads(p) for p in os.listdir("/proc") if p.isdigit() and _owner(p) == uid)
    except OSError:
        running = 1024
    return running + extra


def _owner(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _threads(pid: str) -> int:
    """Linux counts threads, not processes, against RLIMIT_NPROC."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _limit_child(limits: SandboxLimits, nproc: int):
    def apply():
        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
        cpu = int(limits.timeout_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_mb * mb, limits.max_file_mb * mb))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if os.getuid() != 0:  # root ignores RLIMIT_NPROC; the audit hook still refuses fork
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    return apply


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_program(source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``source`` as a Python program in the sandbox; passed = exit status 0 within the limits."""
    limits = limits or SandboxLimits()
    if limits.timeout_s <= 0 or limits.memory_mb < 64:
        raise ColakitError(f"sandbox limits too small: {limits}", "use timeout_s > 0 and memory_mb >= 64")
    scratch = tempfile.mkdtemp(prefix="colakit-sandbox-")
    try:
        with open(os.path.join(scratch, "program.py"), "w", encoding="utf-8") as f:
            f.write(source)
        env = {"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8"}
        cmd = [*network_isolation(), sys.executable, "-I", "-S", "-B", "-c", _GUARD]
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_limit_child(limits, _nproc_limit(limits.max_processes)))
        try:
            out, _ = proc.communicate(timeout=limits.timeout_s)
            status = None
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, _ = proc.communicate()
            status = "timeout"
        finally:
            _kill_group(proc)  # nothing the program started outlives it
        seconds = time.monotonic() - start
        text = out.decode("utf-8", "replace")[-limits.max_output_chars:]
        rc = proc.returncode
        if status is None:
            status = "passed" if rc == 0 else "killed" if rc < 0 else "failed"
        return SandboxResult(status == "passed", status, rc, text, round(seconds, 3))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_programs(sources: list[str], limits: SandboxLimits | None = None, workers: int = 2) -> list[SandboxResult]:
    """``run_program`` over many programs, ``workers`` at a time, results in order."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda s: run_program(s, limits), sources))
