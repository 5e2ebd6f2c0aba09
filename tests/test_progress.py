"""Progress: the stage reporter (a bar on a terminal, timestamped lines elsewhere) and the library's
callbacks behind it (compression blocks, evaluation items, feature rows per batch)."""

import io
import pickle
import re
import threading
import time

import numpy as np
import pytest
import torch
from rich.console import Console
from test_compress_cli import setup  # noqa: F401  (the fixture: a tiny model directory and a CalibrationSet)
from test_evaluate_engine import COPA
from test_evaluate_support import byte_tokenizer, tiny
from test_features import cands
from tiny_models import tiny_model, tiny_tokenizer

import colakit.progress as progress_mod
from colakit.errors import ColakitError
from colakit.progress import StageProgress

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def plain_console() -> tuple[Console, io.StringIO]:
    """A console on a StringIO: not a terminal, like stderr under nohup or in a batch job."""
    buffer = io.StringIO()
    return Console(file=buffer, width=60), buffer


def lines(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# --------------------------------------------------------------------------- the reporter


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_lines_carry_a_timestamp_the_count_and_the_eta(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    console, buffer = plain_console()
    with StageProgress("compress", unit="block", console=console, interval=3600, note="gptq [v2]") as bar:
        clock.now += 5  # loading the model: not part of the ETA
        bar.update(completed=0, total=10)
        assert bar.eta() is None  # no ETA before the first unit
        clock.now += 2
        bar.advance()
        clock.now += 2
        bar.advance()
        assert bar.eta() == pytest.approx(16.0)  # 2 s per block, 8 blocks left
        mid = bar.line()
    first, final = lines(buffer)  # the first as the work starts; then only the heartbeat's (an hour away)
    assert re.fullmatch(STAMP + r" compress: block 0/10 \(0%\), 00:05 elapsed -- gptq \[v2\]", first)  # not markup
    assert re.fullmatch(STAMP + r" compress: block 2/10 \(20%\), 00:09 elapsed, ETA 00:16 -- gptq \[v2\]", mid)
    assert re.fullmatch(STAMP + r" compress: block 2/10 \(20%\), 00:09 elapsed -- done", final)


def test_the_eta_counts_down_within_a_unit_and_restarts_with_a_new_total(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    bar = StageProgress("features", 100, "rows", console=plain_console()[0], enabled=False)
    clock.now += 10
    bar.advance(10)
    clock.now += 30
    assert bar.eta() == pytest.approx(90 - 30)
    bar.update(completed=40, total=200)  # e.g. rows already in the store: not work done now
    assert bar.eta() is None
    clock.now += 4
    bar.update(completed=80)
    assert bar.eta() == pytest.approx(12.0)  # 0.1 s per row, 120 rows left


def test_the_heartbeat_prints_while_nothing_advances():
    console, buffer = plain_console()
    with StageProgress("compress", console=console, interval=0.05) as bar:  # loading: nothing counted yet
        wait_for(lambda: len(lines(buffer)) >= 1)
    assert re.fullmatch(STAMP + r" compress: 00:00 elapsed", lines(buffer)[0])
    console, buffer = plain_console()
    with StageProgress("compress", 30, "block", console=console, interval=0.05) as bar:
        bar.advance(3, note="block 4 is slow")
        wait_for(lambda: len(lines(buffer)) >= 4)
    beats = lines(buffer)[1:-1]
    assert len(beats) >= 3 and all(re.match(STAMP + r" compress: block 3/30 \(10%\), 00:0\d elapsed, ETA \d\d:\d\d "
                                            r"-- block 4 is slow$", b) for b in beats), beats
    assert lines(buffer)[-1].endswith("-- done")
    count = len(lines(buffer))
    time.sleep(0.2)
    assert len(lines(buffer)) == count  # the heartbeat stopped with the stage
    assert not any(t.name.startswith("progress-") for t in threading.enumerate())


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("COLAKIT_PROGRESS_INTERVAL", "0.25")
    assert StageProgress("x", console=plain_console()[0]).interval == 0.25
    monkeypatch.delenv("COLAKIT_PROGRESS_INTERVAL")
    assert StageProgress("x", console=plain_console()[0]).interval == 30.0
    for bad in ("soon", "0", "-1", "nan"):
        monkeypatch.setenv("COLAKIT_PROGRESS_INTERVAL", bad)
        with pytest.raises(ColakitError, match="COLAKIT_PROGRESS_INTERVAL"):
            StageProgress("x", console=plain_console()[0])


def test_an_error_before_any_work_is_the_only_line_and_after_it_the_last_word():
    console, buffer = plain_console()
    with pytest.raises(ValueError), StageProgress("compress", console=console, interval=3600):
        raise ValueError("bad input")  # e.g. refused once the model's files are read
    assert buffer.getvalue() == ""  # the caller's error line stands alone
    with pytest.raises(ValueError), StageProgress("evaluate", 3, "task", console=console, interval=3600) as bar:
        bar.update(note="arc_easy 0/32")
        raise ValueError("boom")
    assert len(lines(buffer)) == 1 and "-- arc_easy 0/32" in lines(buffer)[0]  # no "done" after it


def test_a_disabled_reporter_prints_nothing():
    console, buffer = plain_console()
    with StageProgress("compress", 2, "block", console=console, enabled=False, interval=0.01) as bar:
        bar.advance()
        time.sleep(0.05)
        bar.update(completed=2, note="x")
    assert buffer.getvalue() == ""


def test_on_a_terminal_it_draws_a_bar_and_no_lines():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with StageProgress("compress", 4, "block", console=console, interval=0.01) as bar:
        bar.advance(2, note="[b]x[/b]")
        time.sleep(0.05)
    out = buffer.getvalue()
    assert "compress: block" in out and "2/4" in out and "[b]x[/b]" in out
    assert not re.search(STAMP, out)


# --------------------------------------------------------------------------- the library's callbacks


def test_compress_reports_every_block_in_order_and_computes_the_same():
    from colakit.compress import CompressionConfig, compress

    ids = torch.randint(3, 250, (4, 16), generator=torch.Generator().manual_seed(0))
    config = CompressionConfig("wanda", sparsity=0.5)
    quiet, watched = tiny_model("llama"), tiny_model("llama")
    calls = []
    compress(quiet, ids, torch.ones_like(ids), config)
    compress(watched, ids, torch.ones_like(ids), config, on_block=lambda *a: calls.append(a))
    assert calls == [(0, 2), (1, 2), (2, 2)]
    for (name, a), b in zip(quiet.state_dict().items(), watched.state_dict().values()):
        assert torch.equal(a, b), name


def test_compress_to_dir_passes_the_blocks_on_both_paths(setup, tmp_path):  # noqa: F811
    from colakit.compress import CompressionConfig, compress_to_dir

    _, model_dir, calib_dir = setup
    for streamed in (True, False):
        calls = []
        compress_to_dir(str(model_dir), calib_dir, tmp_path / f"out-{streamed}", CompressionConfig("wanda"),
                        device="cpu", streamed=streamed, on_block=lambda *a, calls=calls: calls.append(a))
        assert calls == [(0, 2), (1, 2), (2, 2)], streamed


def test_evaluate_reports_items_as_they_are_scored(tmp_path):
    from colakit.evaluate import EvalConfig, evaluate

    model, tok = tiny("llama"), byte_tokenizer()
    docs = [{"id": str(i), "text": "The quick brown fox jumps over the lazy dog. " * (i + 1)} for i in range(5)]
    gsm = [{"id": "g0", "question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}]
    events: dict[str, list] = {}
    evaluate(model, tok, "copa,ppl_wiki,gsm8k", config=EvalConfig(max_new_tokens=4, ppl_seq_len=32),
             items_override={"copa": COPA, "ppl_wiki": docs, "gsm8k": gsm}, out=tmp_path / "r.json",
             on_items=lambda name, done, total: events.setdefault(name, []).append((done, total)))
    assert events["copa"][0] == (0, 2 * len(COPA)) and events["copa"][-1] == (2 * len(COPA),) * 2  # two choices each
    assert events["gsm8k"] == [(0, 1), (1, 1)]
    windows = events["ppl_wiki"][0][1]
    assert windows > len(docs) and events["ppl_wiki"][-1] == (windows, windows)
    for name, seen in events.items():
        assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len({t for _, t in seen}) == 1, name
    again = []  # resumed from its checkpoints: nothing is scored, nothing reported
    evaluate(model, tok, "copa", items_override={"copa": COPA}, out=tmp_path / "r.json",
             config=EvalConfig(max_new_tokens=4, ppl_seq_len=32), on_items=lambda *a: again.append(a))
    assert again == []


def handle():
    from colakit.model.load import ModelHandle

    return ModelHandle("tiny", model=tiny_model("llama"), tokenizer=tiny_tokenizer())


def test_features_advance_per_batch_and_do_not_change(tmp_path):
    from colakit.curate.features import FeatureConfig, extract_features

    pool, cfg = cands(50), FeatureConfig(shard_size=16, batch_size=4, proj_dim=32)
    quiet = extract_features(pool, handle(), config=cfg, store_dir=tmp_path / "a", progress=False)
    calls = []
    watched = extract_features(pool, handle(), config=cfg, store_dir=tmp_path / "b",
                               progress=lambda done, total: calls.append((done, total)))
    np.testing.assert_array_equal(quiet, watched)
    done = [d for d, _ in calls]
    assert calls[0] == (0, 50) and calls[-1] == (50, 50) and {t for _, t in calls} == {50}
    assert done == sorted(done) and len(calls) == 1 + 13  # one per batch: 4+4+4+4, 4+4+4+4, 4+4+4+4, 2
    resumed = []
    extract_features(pool, handle(), config=cfg, store_dir=tmp_path / "b", progress=lambda *a: resumed.append(a))
    assert resumed == [(50, 50)]  # all in the store already


def test_features_on_an_executor_elsewhere_advance_per_shard(tmp_path):
    """A remote executor pickles the unit function: no callback may travel with it."""
    from colakit.curate.features import FeatureConfig, extract_features
    from colakit.executors.base import Executor, worker_fn

    class Pickling(Executor):
        name = "pickling"

        @classmethod
        def from_options(cls, **_):
            return cls()

        def _run(self, fn, units, pending, state, label, name):
            work = worker_fn(pickle.loads(pickle.dumps(fn)), state)
            for i in pending:
                yield i, work(units[i])

    pool, cfg = cands(40), FeatureConfig(shard_size=16, batch_size=4, proj_dim=32)
    calls = []
    feats = extract_features(pool, handle(), config=cfg, store_dir=tmp_path / "a", executor=Pickling(),
                             progress=lambda *a: calls.append(a))
    assert calls == [(0, 40), (16, 40), (32, 40), (40, 40)]
    np.testing.assert_array_equal(feats, extract_features(pool, handle(), config=cfg, store_dir=tmp_path / "b",
                                                          progress=False))


# --------------------------------------------------------------------------- the command line


def compress_cli(*args):
    from typer.testing import CliRunner

    from colakit.cli import app

    return CliRunner().invoke(app, ["compress", *map(str, args)])


def test_compress_off_a_terminal_logs_timestamped_block_lines(setup, monkeypatch):  # noqa: F811
    tmp, model_dir, calib_dir = setup
    monkeypatch.delenv("COLAKIT_PROGRESS_INTERVAL", raising=False)  # 30 s: no heartbeat in a test this short
    result = compress_cli("--model", model_dir, "--calib", calib_dir, "--method", "gptq", "--group-size", "16",
                          "--out", tmp / "out")
    assert result.exit_code == 0, result.output
    first, final = [line for line in result.stderr.splitlines() if " compress: " in line]
    assert re.fullmatch(STAMP + r" compress: block 0/2 \(0%\), 00:\d\d elapsed -- gptq, .*tiny \(builtin\)", first)
    assert re.fullmatch(STAMP + r" compress: block 2/2 \(100%\), 00:\d\d elapsed -- done", final)
    assert result.stdout.strip() == str(tmp / "out")  # progress stays off stdout

    monkeypatch.setenv("COLAKIT_PROGRESS_INTERVAL", "0.01")  # a heartbeat all along: the blocks in between
    result = compress_cli("--model", model_dir, "--calib", calib_dir, "--method", "gptq", "--group-size", "16",
                          "--out", tmp / "again")
    progress = [line for line in result.stderr.splitlines() if " compress: " in line]
    assert result.exit_code == 0 and len(progress) > 2, result.output
    assert all(re.match(STAMP + r" compress: (block [012]/2 \(\d+%\), )?00:\d\d elapsed", p) for p in progress)


def test_the_command_line_turns_the_libraries_own_bars_off():
    """compressed-tensors, datasets and transformers draw tqdm bars that flood a log off a terminal."""
    import os
    import subprocess
    import sys

    code = ("import os, sys\nsys.argv = ['colakit', 'models', 'list']\nfrom colakit.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "from tqdm import tqdm\nprint(os.environ['TQDM_DISABLE'], tqdm(range(3)).disable, file=sys.stderr)")
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert proc.stderr.strip().splitlines()[-1] == "1 True", proc.stderr
