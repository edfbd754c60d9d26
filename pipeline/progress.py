"""Progress handles for stages: rich bars on stderr, or nothing (tests, --no-progress).

The CLI hands `make_tracker` to the Runtime (`Runtime.tracker`); stages only call `rt.track`.
An epoch loop with early stopping passes `since_best` and `patience` with each advance: its bar
then shows "no gain n/patience" instead of an ETA to the maximum epoch count, which it rarely reaches.
"""
from __future__ import annotations

import time
from typing import Any

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

from pipeline.console import err
from schemas.runtime import NoProgress

STOP_FIELDS = ("since_best", "patience")


NullTracker = NoProgress   # the do-nothing handle (schemas/runtime.py) that the bars below extend


def stopping_text(fields: dict[str, Any]) -> str | None:
    """'no gain 3/10 epochs' when the loop reports early-stopping state, else None."""
    if "patience" not in fields:
        return None
    return f"no gain {fields.get('since_best', 0)}/{fields['patience']} epochs"


class StopOrRemainingColumn(ProgressColumn):
    """Early stopping: epochs since the best and the patience. Otherwise: rich's time remaining."""

    def __init__(self) -> None:
        super().__init__()
        self.remaining = TimeRemainingColumn()

    def render(self, task: Any) -> Text:
        stop = task.fields.get("stop")
        return Text(stop, style="progress.remaining") if stop else self.remaining.render(task)


class RichTracker(NullTracker):
    def __init__(self, description: str, total: int | None):
        self.description = description
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), StopOrRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=err, transient=False,
        )
        self.task = self.progress.add_task(description, total=total, info="", stop=None)

    def __enter__(self) -> "RichTracker":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def advance(self, n: int = 1, **fields: Any) -> None:
        extra = {"info": _fmt(fields), "stop": stopping_text(fields)} if fields else {}
        self.progress.update(self.task, advance=n, **extra)

    def update(self, **fields: Any) -> None:
        self.progress.update(self.task, info=_fmt(fields))


class LineTracker(NullTracker):
    """For logs (stderr not a terminal): a plain line at most every `every` seconds, and at the end."""

    def __init__(self, description: str, total: int | None, every: float = 30.0):
        self.description, self.total, self.every = description, total, every
        self.n, self.fields, self.last = 0, {}, time.monotonic()

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.n += n
        self.fields.update(fields)
        if time.monotonic() - self.last >= self.every or (self.total is not None and self.n >= self.total):
            self._line()

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)

    def _line(self) -> None:
        self.last = time.monotonic()
        total = f"/{self.total}" if self.total is not None else ""
        stop = stopping_text(self.fields)
        stop = f" ({stop})" if stop else ""
        err.print(f"{time.strftime('%H:%M:%S')} {self.description} {self.n}{total}{stop} {_fmt(self.fields)}",
                  markup=False)


def _fmt(fields: dict[str, Any]) -> str:
    shown = {k: v for k, v in fields.items() if k not in STOP_FIELDS}
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())


def make_tracker(description: str, total: int | None) -> NullTracker:
    """Runtime.tracker: a bar on a terminal, plain lines in a log."""
    return RichTracker(description, total) if err.is_terminal else LineTracker(description, total)
