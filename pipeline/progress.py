"""Progress handles for stages: rich bars on stderr, or nothing (tests, --no-progress)."""
from __future__ import annotations

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


def _fmt(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


def make_tracker(rt: Any, description: str, total: int | None) -> NullTracker:
    return RichTracker(description, total) if rt.progress else NullTracker()
