"""The command line as a script sees it: exit codes, one-line errors, user text printed verbatim.

Each case runs the real ``colakit`` entry point in a child process and checks the exit code, that
no traceback leaks, that the message names the problem, and that files the user had are unchanged.
"""

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from colakit import __version__
from colakit.cli.app import main
from colakit.errors import ColakitError

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
                            env={**ENV, "COLAKIT_PROGRESS_INTERVAL": "0.5"},
                            # a shell without job control starts background jobs with SIGINT ignored,
                            # and Python keeps it so: give the child the default, as a terminal would
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 240
        for line in proc.stderr:  # wait until a task is being scored (not a library's start-up)
            if "evaluate: task" in line or time.time() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        proc.kill()  # never left running (a full evaluation) if the test fails
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest
    assert not (tmp_path / "eval.json").exists()  # nothing half-written in its place


# --------------------------------------------------------------------------- in-process cases
# The cases below run the entry point in this process (``main()``, as the console script does), so
# a test can see that no model was loaded and no evaluation started: each refusal comes first.

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "general.yaml"


class Loaded(AssertionError):
    """Raised by the test doubles of the model loaders: the refusal came too late."""


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli(*args)`` -> (exit code, stdout, stderr); loading a model or starting an evaluation fails the case."""
    import colakit.evaluate
    from colakit.curate import features
    from colakit.model import load

    def refuse(*_a, **_k):
        raise Loaded("a model was loaded before the bad input was refused")

    for module, name in ((load, "load_model"), (load, "load_tokenizer"), (features, "load_model"),
                         (colakit.evaluate, "evaluate_model")):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.delenv("COLAKIT_TRACEBACK", raising=False)

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["colakit", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code or 0
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def refused(result, *words):
    """Exit 2, one line on stderr naming the problem and the fix (after " -- "), nothing on stdout."""
    code, stdout, stderr = result
    assert code == 2, stderr
    assert "Traceback" not in stderr and not stdout
    assert len(stderr.strip().splitlines()) == 1 and " -- " in stderr, stderr
    for word in words:
        assert word in stderr, (word, stderr)
    return stderr


@pytest.fixture
def files(tmp_path):
    """The user's files (a text file, a folder with a file in it) and their digests, to compare after."""
    (tmp_path / "notes.txt").write_text("mine\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("keep\n")
    before = {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()}
    yield tmp_path
    assert {p: digest(p) for p in before} == before  # every case leaves them as they were


def fake_results(out, model="tiny"):
    """What ``evaluate_model`` returns and writes, for one task."""
    from colakit.evaluate.results import SCHEMA, write_results

    results = {"schema": SCHEMA, "model": {"name": model}, "wall_time_s": 0.1, "capabilities": {},
               "tasks": {"arc_easy": {"capability": "Commonsense", "n": 2, "primary": "acc", "wall_time_s": 0.1,
                                      "metrics": {"acc": 0.5, "acc_stderr": 0.35}}}}
    if out:
        write_results(out, results)
    return results


OUT_COMMANDS = {  # a command and its arguments, less --out
    "evaluate": ["evaluate", "--suite", "arc_easy", "--limit", "2"],
    "compress": ["compress", "--method", "rtn", "--model", "tiny"],
    "curate": ["curate", "--method", "random", "--n", "4"],
    "report": ["report", "."],
    "run": ["run", CONFIG],
}


@pytest.mark.parametrize("command", OUT_COMMANDS)
def test_an_out_inside_a_file_is_refused(cli, files, command):
    refused(cli(*OUT_COMMANDS[command], "--out", files / "notes.txt" / "sub"),
            "is inside", "notes.txt, which is a file", "choose a --out outside")


@pytest.mark.parametrize("command", ["evaluate", "compress", "curate", "run"])
def test_an_out_whose_folder_cannot_be_created_is_refused(cli, command):
    refused(cli(*OUT_COMMANDS[command], "--out", "/proc/colakit-test/out"), "cannot write --out /proc/colakit-test/out",
            "/proc is not writable", "in a folder you can write")


def test_evaluate_refuses_an_unrelated_file_unless_overwrite(cli, files, monkeypatch):
    import colakit.evaluate

    notes = files / "notes.txt"
    refused(cli("evaluate", "--out", notes), f"--out {notes} already exists and is not a colakit evaluation result",
            "pass --overwrite")
    other = files / "other.txt"
    other.write_text("not yours\n")
    monkeypatch.setattr(colakit.evaluate, "evaluate_model", lambda *a, out, **k: fake_results(out))
    code, stdout, stderr = cli("evaluate", "--suite", "arc_easy", "--out", other, "--overwrite")
    assert code == 0, stderr
    assert json.loads(other.read_text())["schema"] == "colakit.evaluate/1"  # replaced
    code, _, stderr = cli("evaluate", "--suite", "arc_easy", "--out", other)  # now ours: a rerun rewrites it
    assert code == 0, stderr


def test_evaluate_out_an_existing_directory(cli, files):
    refused(cli("evaluate", "--out", files / "folder"), "is a directory", f"--out {files / 'folder' / 'results.json'}")


def test_compare_is_checked_before_any_evaluation(cli, files):
    """The `Loaded` doubles would turn an evaluation into exit 1: exit 2 says nothing ran first."""
    refused(cli("evaluate", "--suite", "arc_easy", "--out", files / "r.json", "--compare", files / "nosuch.json"),
            "nosuch.json does not exist", "pass a results.json written by `colakit evaluate`")
    (files / "other.json").write_text('{"tasks": {}}')
    refused(cli("evaluate", "--out", files / "r.json", "--compare", files / "other.json"),
            "is not a colakit evaluation result")
    (files / "latin1.json").write_bytes(b'{"caf\xe9": 1}')
    refused(cli("evaluate", "--out", files / "r.json", "--compare", files / "latin1.json"), "is not valid JSON")
    assert not (files / "r.json").exists()


@pytest.mark.parametrize("dense, words", [
    ("smollm2-135", ["--compare smollm2-135 is not a results JSON, a built-in model id, a model directory"]),
    ("{tmp}/folder", ["folder is a directory without config.json"]),
    ("{tmp}/nosuch", ["--compare {tmp}/nosuch is not a results JSON"]),
    ("folder/nosuch", ["--compare folder/nosuch is not a results JSON"]),  # a mistyped path, not a hub id
    ("{tmp}/dense.json", ["dense.json does not exist", "pass a results.json written by `colakit evaluate`"]),
])
def test_a_compare_model_that_does_not_exist_is_refused_before_any_evaluation(cli, files, monkeypatch, dense, words):
    """Not only after the compressed model's whole evaluation: the `Loaded` doubles turn any evaluation into exit 1."""
    monkeypatch.chdir(files)
    fix = [] if dense.endswith(".json") else ["a built-in id from `colakit models list`",
                                             "a results JSON from `colakit evaluate --out`", "model directory"]
    refused(cli("evaluate", "--suite", "arc_easy", "--out", files / "r.json", "--compare", dense.format(tmp=files)),
            *(w.format(tmp=files) for w in words), *fix)
    assert not (files / "r.json").exists() and not (files / "r.dense.json").exists()


@pytest.mark.parametrize("dense", ["smollm2-135m", "{tmp}/model", "HuggingFaceTB/SmolLM2-135M"])
def test_a_compare_model_that_can_be_evaluated_is_evaluated(cli, files, monkeypatch, dense):
    import colakit.evaluate

    (files / "model").mkdir()
    (files / "model" / "config.json").write_text("{}")
    evaluated = []
    monkeypatch.setattr(colakit.evaluate, "evaluate_model",
                        lambda name, *a, out, **k: evaluated.append(str(name)) or fake_results(out))
    monkeypatch.setattr(colakit.evaluate, "compare", lambda *a, **k: {"tasks": {}, "capabilities": {}})
    code, stdout, stderr = cli("evaluate", "--suite", "arc_easy", "--out", files / "r.json", "--json",
                               "--compare", dense.format(tmp=files))
    assert code == 0, stderr
    assert evaluated == ["smollm2-135m", dense.format(tmp=files)] and json.loads(stdout)["retention"]["tasks"] == {}


def test_compress_and_curate_refuse_an_existing_directory(cli, files):
    folder = files / "folder"
    refused(cli(*OUT_COMMANDS["compress"], "--out", folder), "already exists", "pass --overwrite")
    refused(cli(*OUT_COMMANDS["curate"], "--out", folder), "already exists", "pass --overwrite")
    # --overwrite replaces only what the command wrote: this folder is the user's
    refused(cli(*OUT_COMMANDS["compress"], "--out", folder, "--overwrite"), "is not a compressed model directory",
            "refusing to replace it")
    refused(cli(*OUT_COMMANDS["curate"], "--out", folder, "--overwrite"), "is not a CalibrationSet")
    refused(cli(*OUT_COMMANDS["curate"], "--out", files / "notes.txt"), "is a file, not a directory")


def test_report_refuses_to_replace_an_unrelated_file(cli, files):
    from report_rundir import fabricate_rundir

    rundir = fabricate_rundir(files / "run")
    (files / "mine.md").write_text("# my notes\n")
    before = digest(files / "mine.md")
    refused(cli("report", rundir, "--out", files / "notes.txt"), "already exists and is not a colakit report")
    refused(cli("report", rundir, "--out", files / "mine.html"), "mine.md already exists")  # the summary beside it
    assert digest(files / "mine.md") == before and not (files / "mine.html").exists()


@pytest.mark.parametrize("args, words", [
    (["sources", "show", "{latin1}"], ["line 1 is not UTF-8", "iconv"]),
    (["check-overlap", "{latin1}"], ["line 1 is not UTF-8", "iconv"]),
    (["check-overlap", "{text}", "--n", "0"], ["n-gram length must be at least 1", "n=13"]),
    (["check-overlap", "{tmp}/nosuch.txt"], ["does not exist", "check the path"]),
    (["sources", "show", "{text}", "--field", "question"], ["--field"]),
    (["curate", "--out", "{tmp}/set", "--method", "nosuch"], ["unknown curation method 'nosuch'", "available: balanced, balanced-hessian, balanced-trial, cola"]),
    (["curate", "--out", "{tmp}/set", "-p", "n_init"], ["cannot read --param 'n_init'", "NAME=VALUE"]),
    (["curate", "--out", "{tmp}/set", "--n", "-3"], ["--n -3 is not positive", "at least one sample"]),
    (["curate", "--out", "{tmp}/set", "--seq-len", "0"], ["--seq-len 0 is too short", "at least 8"]),
    (["curate", "--out", "{tmp}/set", "--pool", "0"], ["--pool 0 is not positive", "leave --pool out"]),
    (["curate", "--out", "{tmp}/set", "--heldout-fraction", "2"], ["--heldout-fraction 2.0 is not in [0, 1)"]),
    (["curate", "--out", "{tmp}/set", "--target", "nosuch"], ["unknown target 'nosuch'", "use one of: general"]),
    (["curate", "--out", "{tmp}/set", "--weights", "math"], ["cannot read weight 'math'", "math=2"]),
    (["curate", "--out", "{tmp}/set", "--executor", "nosuch"], ["unknown executor 'nosuch'", "local, ray"]),
    (["compress", "--method", "nosuch", "--out", "{tmp}/m"], ["unknown compression method 'nosuch'", "use one of"]),
    (["compress", "--method", "rtn", "-p", "bits", "--out", "{tmp}/m"], ["cannot read --param 'bits'", "NAME=VALUE"]),
    (["compress", "--method", "rtn", "--bits", "99", "--out", "{tmp}/m"], ["bits 99 is outside 2-8", "--bits 2 to 8"]),
    (["compress", "--method", "gptq", "--group-size", "sixty", "--out", "{tmp}/m"], ["'sixty' is not a number"]),
    (["compress", "--method", "gptq", "--calib", "{tmp}/nosuch", "--out", "{tmp}/m"], ["--calib", "is not a dir"]),
    (["evaluate", "--suite", "nosuch", "--out", "{tmp}/r.json"], ["unknown task 'nosuch'", "suites: quick"]),
    (["evaluate", "--limit", "-2", "--out", "{tmp}/r.json"], ["--limit must be a positive number", "leave --limit"]),
    (["evaluate", "--max-new-tokens", "0", "--out", "{tmp}/r.json"], ["--max-new-tokens must be positive"]),
    (["inspect", "{tmp}"], ["is not a CalibrationSet directory", "colakit curate"]),
    (["score", "{tmp}", "--target", "nosuch"], ["unknown target 'nosuch'"]),
    (["run", "{tmp}/nosuch.yaml", "--out", "{tmp}/run"], ["grid config", "not found", "YAML file"]),
    (["run", CONFIG, "--out", "{tmp}/run", "--seeds", "a,b"], ["--seeds 'a,b' is not a list of integers"]),
])
def test_bad_input_is_refused_before_any_work(cli, files, args, words):
    (files / "latin1.jsonl").write_bytes(b'{"text": "caf\xe9 au lait"}\n')
    (files / "text.txt").write_text("A paragraph of calibration text.\n")
    paths = {"tmp": files, "latin1": files / "latin1.jsonl", "text": files / "text.txt"}
    refused(cli(*(str(a).format(**paths) for a in args)), *words)
    assert not any((files / name).exists() for name in ("set", "m", "r.json", "run"))  # nothing was written


def test_ctrl_c_in_a_command_exits_130(cli, monkeypatch):
    from colakit.model import load

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(load, "_cached_ok", interrupted)
    code, stdout, stderr = cli("models", "list")
    assert code == 130 and "Traceback" not in stderr and not stdout


def test_exit_0_on_success(cli):
    code, stdout, _ = cli("models", "list", "--json")
    assert code == 0 and json.loads(stdout)


# --------------------------------------------------------------------------- what gets written


def test_written_files_and_directories_follow_the_umask(tmp_path):
    from colakit.cache import atomic_dir, atomic_path, write_json_atomic

    for umask, file_mode, dir_mode in ((0o022, 0o644, 0o755), (0o077, 0o600, 0o700)):
        old = os.umask(umask)
        try:
            write_json_atomic(tmp_path / f"r{umask}.json", {"a": 1})
            with atomic_path(tmp_path / f"p{umask}.bin") as tmp:
                tmp.write_bytes(b"x")
            with atomic_dir(tmp_path / f"d{umask}") as tmp:
                (tmp / "f").write_text("x")
        finally:
            os.umask(old)
        for name, mode in ((f"r{umask}.json", file_mode), (f"p{umask}.bin", file_mode), (f"d{umask}", dir_mode)):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, (name, oct(umask))


def test_overwrite_swaps_a_directory_in_only_once_complete(tmp_path):
    from colakit.paths import output_dir

    out = tmp_path / "set"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), output_dir(out) as target:
        target.mkdir()
        (target / "new.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"] and (out / "old.txt").exists()  # old one kept
    with output_dir(out) as target:
        assert target != out and (out / "old.txt").exists()  # the old one stays until the new one is done
        target.mkdir()
        (target / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"] and [p.name for p in out.iterdir()] == ["new.txt"]


def test_compress_overwrite_replaces_its_own_output(tmp_path):
    from tiny_models import tiny_model, tiny_tokenizer
    from typer.testing import CliRunner

    from colakit.cli import app

    model_dir, out = tmp_path / "tiny", tmp_path / "q"
    tiny_model("llama").save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    args = ["compress", "--method", "rtn", "--bits", "4", "--group-size", "16", "--model", str(model_dir),
            "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    first = json.loads((out / "compression.json").read_text())["created"]
    again = CliRunner().invoke(app, args)
    assert isinstance(again.exception, ColakitError) and "already exists" in str(again.exception)
    time.sleep(1.1)  # "created" has one-second resolution
    done = CliRunner().invoke(app, [*args, "--overwrite", "--bits", "8"])
    assert done.exit_code == 0, done.output
    report = json.loads((out / "compression.json").read_text())
    assert report["created"] != first and report["config"]["bits"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q", "tiny"]  # no staging directory left behind


def test_curate_names_a_source_that_is_not_utf8(tmp_path):
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"text": "caf\xe9 au lait"}\n' * 8)
    done = colakit("curate", "--sources", latin1, "--out", tmp_path / "set", "--method", "random", "--n", "4",
                   "--seq-len", "32")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{latin1} line 1 is not UTF-8" in done.stderr and "iconv" in done.stderr
    assert not (tmp_path / "set").exists()
