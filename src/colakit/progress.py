"""Progress of one long stage (compressing, evaluating, extracting features), on a terminal or in a log.

On a terminal, a rich bar with the elapsed time and an ETA. Anywhere else (nohup, a batch job, a
pipe), where a bar prints nothing useful, plain timestamped lines: one as the work starts (the
first count, or the first heartbeat, whichever comes first: an input refused before any work
stays the only line on stderr), one every ``interval`` seconds from a heartbeat thread (so a
ten-minute block still shows the run is alive) and one at the end::

    2026-12-02 15:40:45 compress: block 3/30 (10%), 00:12 elapsed, ETA 01:40 -- gptq, smollm2-135m

The ETA is the mean time per finished unit times the units left (none before the first unit); the
clock restarts whenever the total changes, so a model load before the first block does not count.
``COLAKIT_PROGRESS_INTERVAL`` (seconds) sets the heartbeat's default of 30 s.

The library reports through plain callbacks (``compress(on_block=...)``, ``evaluate(on_items=...)``,
``extract_features(progress=...)``); whoever shows them (the command line) turns the calls into
``advance``/``update`` on one of these, on its own console.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from colakit.errors import ColakitError

INTERVAL_ENV = "COLAKIT_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0


def interval_from_env() -> float:
    """The heartbeat interval: ``COLAKIT_PROGRESS_INTERVAL`` seconds, else 30."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ColakitError(f"{INTERVAL_ENV}={text!r} is not a positive number of seconds",
                           f"set e.g. {INTERVAL_ENV}=30, or unset it")
    return value


def clock(seconds: float) -> str:
    """``MM:SS``, or ``H:MM:SS`` from an hour on."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class _MeanTimeRemaining(TimeRemainingColumn):
    """rich's ETA column showing the reporter's estimate: rich's own speed window (30 s) sees no
    progress at all while one unit takes longer than that."""

    def __init__(self, estimate):
        super().__init__(compact=True)
        self.estimate = estimate

    def render(self, task) -> Text:
        eta = self.estimate()
        return Text("--:--" if eta is None else clock(eta), style="progress.remaining")


class StageProgress:
    """Progress of one stage: ``label``, ``total`` units (None: not known yet) named ``unit``.

    Use it as a context manager; ``advance``/``update`` may be called from any thread. With
    ``enabled=False`` it shows nothing. ``interval``: seconds between heartbeat lines off a
    terminal (default ``interval_from_env()``); ``transient``: the terminal bar goes away at the end.
    """

    def __init__(self, label: str, total: int | None = None, unit: str = "", *, console: Console | None = None,
                 enabled: bool = True, interval: float | None = None, transient: bool = False, note: str = ""):
        self.label, self.total, self.unit, self.note = label, total, unit, note
        self.completed = 0
        self.enabled, self.transient = enabled, transient
        self.console = console if console is not None else Console(stderr=True)
        # a disabled reporter never reads the environment (so never refuses a bad value)
        self.interval = interval if interval is not None else interval_from_env() if enabled else DEFAULT_INTERVAL_S
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._started = self._zero = time.monotonic()
        self._zero_count, self._last_unit = 0, None  # units when the ETA clock (re)started; when the last finished
        self._bar: Progress | None = None
        self._task = None
        self._heartbeat: threading.Thread | None = None
        self._logging = self._shown = False  # plain lines (off a terminal); the first one printed

    # ------------------------------------------------------------------ the caller's side

    def __enter__(self) -> Self:
        if not self.enabled:
            return self
        with self._lock:
            self._started = self._zero = time.monotonic()
            if self.console.is_terminal:
                self._start_bar()
            else:
                self._logging = True
                self._heartbeat = threading.Thread(target=self._beat, name=f"progress-{self.label}", daemon=True)
                self._heartbeat.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.enabled:
            return
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()  # outside the lock: its last line may be waiting for it
        with self._lock:
            if self._bar is not None:
                self._bar.stop()
            elif exc_type is None:  # on an error the error's own line is the last word
                self._print(self.line(final=True))
            self._logging = False  # a late call prints nothing after the last line

    def advance(self, n: int = 1, note: str | None = None) -> None:
        """``n`` more units finished; ``note`` (None: keep the current one) says what is going on."""
        with self._lock:
            self._set(self.completed + n, self.total, note)

    def update(self, completed: int | None = None, total: int | None = None, note: str | None = None) -> None:
        """Set the units finished, the total, the note; what is None stays as it was."""
        with self._lock:
            self._set(self.completed if completed is None else completed, self.total if total is None else total,
                      note)

    def eta(self) -> float | None:
        """Seconds left: mean time per unit finished since the clock started, times the units left."""
        with self._lock:
            done = self.completed - self._zero_count
            if not self.total or self._last_unit is None or done <= 0:
                return None
            if self.completed >= self.total:
                return 0.0
            per_unit = (self._last_unit - self._zero) / done
            return max(0.0, per_unit * (self.total - self.completed) - (time.monotonic() - self._last_unit))

    def line(self, final: bool = False) -> str:
        """The plain progress line (with its timestamp)."""
        with self._lock:
            eta = None if final else self.eta()
            parts = (self._count(), f"{clock(time.monotonic() - self._started)} elapsed",
                     "" if eta is None else f"ETA {clock(eta)}")
            text = f"{self.label}: " + ", ".join(p for p in parts if p)
            note = "done" if final else self.note
            if note:
                text += f" -- {note}"
            return f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}"

    # ------------------------------------------------------------------ inside

    def _count(self) -> str:
        if self.total is None and not self.completed:
            return ""  # nothing counted yet: the elapsed time and the note say it all
        count = str(self.completed)
        if self.total:
            count += f"/{self.total} ({int(100 * min(self.completed, self.total) / self.total)}%)"
        return f"{self.unit} {count}" if self.unit else count

    def _set(self, completed: int, total: int | None, note: str | None) -> None:
        now = time.monotonic()
        if total != self.total or completed < self.completed:  # a new count: restart the ETA clock
            self._zero, self._zero_count, self._last_unit = now, completed, None
        elif completed > self.completed:
            self._last_unit = now
        self.completed, self.total = completed, total
        if note is not None:
            self.note = note
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, total=total, note=self.note)
        elif self._logging and not self._shown:  # the work has started: say so now, then at the heartbeat's rate
            self._print(self.line())

    def _start_bar(self) -> None:
        description = f"{self.label}: {self.unit}" if self.unit else self.label
        # the note takes what the line has left: on a narrow terminal it is cut, never the counts
        note = TextColumn("{task.fields[note]}", markup=False, table_column=Column(no_wrap=True, ratio=1))
        self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(bar_width=20),
                             MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                             _MeanTimeRemaining(self.eta), note, console=self.console, transient=self.transient,
                             expand=True)
        self._task = self._bar.add_task(description, total=self.total, completed=self.completed, note=self.note)
        self._bar.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                self._print(self.line())

    def _print(self, line: str) -> None:
        self._shown = True
        self.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
