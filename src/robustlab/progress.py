"""Progress bars with rate and ETA for every long loop (training, attacks, downloads).

A thin layer over :mod:`rich.progress` so that the rest of the code never imports rich and a
caller can silence output (``quiet=True`` or ``ROBUSTLAB_QUIET=1``, which the tests set).
Bars go to stderr so that stdout stays parseable.
"""

from __future__ import annotations

import os
import sys
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


class _Task:
    def __init__(self, progress, task_id):
        self._p = progress
        self._id = task_id

    def advance(self, n: float = 1, **fields) -> None:
        self._p.update(self._id, advance=n, **fields)

    def update(self, **fields) -> None:
        self._p.update(self._id, **fields)


@contextmanager
def progress_bar(description: str, total: float | None, unit: str = "it",
                 quiet: bool | None = None) -> Iterator[_Task | _NullTask]:
    """``with progress_bar("train", total=n, unit="img") as bar: bar.advance(k, info="...")``"""
    if _quiet(quiet):
        yield _NullTask()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=sys.stderr)
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, console=console, transient=False, refresh_per_second=4) as p:
        task_id = p.add_task(description, total=total, info="", rate="")
        task = _Task(p, task_id)
        original = task.advance

        def advance(n: float = 1, **fields) -> None:
            original(n, **fields)
            t = p.tasks[0]
            speed = t.speed
            if speed:
                p.update(task_id, rate=f"{speed:,.1f} {unit}/s")

        task.advance = advance  # type: ignore[method-assign]
        yield task


def track(iterable: Iterable[T], description: str, total: int | None = None, unit: str = "it",
          quiet: bool | None = None) -> Iterator[T]:
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with progress_bar(description, total, unit=unit, quiet=quiet) as bar:
        for item in iterable:
            yield item
            bar.advance(1)
