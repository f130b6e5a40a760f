"""Progress bars with rate and ETA for every long loop (training, attacks, downloads).

A thin layer over :mod:`rich.progress` so that the rest of the code never imports rich and a
caller can silence output (``quiet=True`` or ``ROBUSTLAB_QUIET=1``, which the tests set).
Bars go to stderr so that stdout stays parseable.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def _quiet(quiet: bool | None) -> bool:
    if quiet is not None:
        return quiet
    return os.environ.get("ROBUSTLAB_QUIET", "") not in ("", "0")


class _NullTask:
    def advance(self, n: float = 1, **fields) -> None:
        pass

    def update(self, **fields) -> None:
        pass

    def set_completed(self, completed: float, **fields) -> None:
        pass


def _fmt_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


class _Rate:
    """Rate and ETA from this session's work only: what was done before (``start``, e.g. the
    part of an evaluation finished before ``--resume``) counts toward the total, not the rate."""

    def __init__(self, total: float | None, start: float, unit: str):
        self.total, self.start, self.unit = total, float(start), unit
        self.completed = float(start)
        self.t0 = time.monotonic()

    def text(self) -> tuple[str, str]:
        dt = time.monotonic() - self.t0
        done = self.completed - self.start
        if dt <= 0 or done <= 0:
            return "", "-:--:--"
        rate = done / dt
        eta = "-:--:--" if not self.total else _fmt_eta(max(0.0, self.total - self.completed)
                                                       / rate)
        return f"{rate:,.2f} {self.unit}/s" if rate < 10 else f"{rate:,.1f} {self.unit}/s", eta


class _Task:
    def __init__(self, progress, task_id, rate: _Rate):
        self._p = progress
        self._id = task_id
        self._rate = rate

    def set_completed(self, completed: float, **fields) -> None:
        self._rate.completed = float(completed)
        r, eta = self._rate.text()
        self._p.update(self._id, completed=completed, rate=r, eta=eta, **fields)

    def advance(self, n: float = 1, **fields) -> None:
        self.set_completed(self._rate.completed + n, **fields)

    def update(self, **fields) -> None:
        self._p.update(self._id, **fields)


class _PlainTask:
    """For a log file or a pipe: a plain line at least every ``interval`` seconds (from a
    background thread, so a slow batch still reports), and one at the end."""

    def __init__(self, description: str, rate: _Rate, interval: float, stream):
        self.description, self._rate, self.interval, self.stream = (description, rate,
                                                                    interval, stream)
        self.info = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def line(self) -> str:
        r, eta = self._rate.text()
        total = self._rate.total
        done = self._rate.completed
        of = f"{done:,.1f}/{total:,.0f}" if total else f"{done:,.1f}"
        parts = [self.description, of, r, f"ETA {eta}", self.info]
        return "  ".join(p for p in parts if p)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        print(self.line(), file=self.stream, flush=True)

    def set_completed(self, completed: float, **fields) -> None:
        self._rate.completed = float(completed)
        self.info = str(fields.get("info", self.info))

    def advance(self, n: float = 1, **fields) -> None:
        self.set_completed(self._rate.completed + n, **fields)

    def update(self, **fields) -> None:
        self.info = str(fields.get("info", self.info))


def plain_interval() -> float:
    """Seconds between plain progress lines when stderr is not a terminal (default 30;
    ``ROBUSTLAB_PROGRESS_INTERVAL`` changes it)."""
    try:
        return max(0.05, float(os.environ.get("ROBUSTLAB_PROGRESS_INTERVAL", "30")))
    except ValueError:
        return 30.0


@contextmanager
def progress_bar(description: str, total: float | None, unit: str = "it",
                 quiet: bool | None = None, start: float = 0) -> Iterator:
    """``with progress_bar("train", total=n, unit="img") as bar: bar.advance(k, info="...")``;
    ``bar.set_completed(x)`` moves it to ``x`` (fractions allowed, for progress within a
    batch). ``start`` is work already done (after a resume): shown, but not counted in the rate.
    On a terminal a live bar; otherwise a plain line every :func:`plain_interval` seconds."""
    if _quiet(quiet):
        yield _NullTask()
        return
    rate = _Rate(total, start, unit)
    if not sys.stderr.isatty():
        task = _PlainTask(description, rate, plain_interval(), sys.stderr)
        try:
            yield task
        finally:
            task.close()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(file=sys.stderr)
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, console=console, transient=False, refresh_per_second=4) as p:
        task_id = p.add_task(description, total=total, completed=start, info="", rate="",
                             eta="-:--:--")
        yield _Task(p, task_id, rate)


def track(iterable: Iterable[T], description: str, total: int | None = None, unit: str = "it",
          quiet: bool | None = None) -> Iterator[T]:
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with progress_bar(description, total, unit=unit, quiet=quiet) as bar:
        for item in iterable:
            yield item
            bar.advance(1)
