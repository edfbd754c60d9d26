"""Progress handles for stages: rich bars on stderr, or nothing (tests, --no-progress)."""
from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pipeline.console import err


class NullTracker:
    def __enter__(self) -> "NullTracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def advance(self, n: int = 1, **fields: Any) -> None:
        return None

    def update(self, **fields: Any) -> None:
        return None


class RichTracker(NullTracker):
    def __init__(self, description: str, total: int | None):
        self.description = description
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=err, transient=False,
        )
        self.task = self.progress.add_task(description, total=total, info="")

    def __enter__(self) -> "RichTracker":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.progress.update(self.task, advance=n, info=_fmt(fields) if fields else None)

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
        err.print(f"{time.strftime('%H:%M:%S')} {self.description} {self.n}{total} {_fmt(self.fields)}", markup=False)


def _fmt(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


def make_tracker(rt: Any, description: str, total: int | None) -> NullTracker:
    if not rt.progress:
        return NullTracker()
    return RichTracker(description, total) if err.is_terminal else LineTracker(description, total)
