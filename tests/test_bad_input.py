"""The command line as a script sees it: exit codes, one-line errors, user text printed verbatim.

Each case runs the real ``colakit`` entry point in a child process and checks the exit code, that
no traceback leaks, that the message names the problem, and that files the user had are unchanged.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from colakit import __version__
from colakit.cli.app import main

ENV = {**os.environ, "COLAKIT_TRACEBACK": ""}


def colakit(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "colakit", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=300)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_version_is_printed_on_stdout():
    done = colakit("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"colakit {__version__}" and not done.stderr


@pytest.mark.parametrize("args", [["--bogus"], ["models", "lst"], ["curate", "--n"]])
def test_usage_errors_exit_2_without_a_traceback(args):
    done = colakit(*args)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr and done.stderr.strip() and not done.stdout


def test_a_path_with_brackets_is_named_as_given(tmp_path):
    missing = tmp_path / "run[v2]"
    done = colakit("report", missing)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{missing} does not exist" in done.stderr  # rich would print "run" without the escape
    assert len(done.stderr.strip().splitlines()) == 1


def test_bad_input_leaves_the_users_files_alone(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("mine\n")
    before = digest(precious)
    done = colakit("report", tmp_path / "nothing-here", "--out", precious)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert digest(precious) == before


def test_an_unexpected_error_is_one_line_and_exit_1(monkeypatch, capsys):
    """A bug (an exception that is not a ColakitError) still prints one line and says how to see more."""
    from colakit.model import load

    def broken(*_):
        raise RuntimeError("cache index unreadable")

    monkeypatch.setattr(load, "_cached_ok", broken)
    monkeypatch.setattr(sys, "argv", ["colakit", "models", "list"])
    monkeypatch.delenv("COLAKIT_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert "RuntimeError: cache index unreadable" in err and "rerun with -v" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.integration
def test_ctrl_c_exits_130(tmp_path):
    """An interrupted evaluation stops with exit code 130 (what shells report for SIGINT) and no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "colakit", "evaluate", "--model", "smollm2-135m", "--suite",
                             "quick", "--out", str(tmp_path / "eval.json")], stderr=subprocess.PIPE, text=True,
                            env=ENV)
    deadline = time.time() + 240
    for line in proc.stderr:  # wait until the work has started
        if "evaluating" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest
    assert not (tmp_path / "eval.json").exists()  # nothing half-written in its place
