"""The one place that writes to stderr. stdout is reserved for results (JSON, paths)."""
from __future__ import annotations

from rich.console import Console

err = Console(stderr=True, highlight=False, soft_wrap=True)   # one error = one line, even for long paths
_level = {"value": "info"}


def set_level(level: str) -> None:
    _level["value"] = level


def log(msg: str) -> None:
    if _level["value"] != "quiet":
        err.print(msg)


def debug(msg: str) -> None:
    if _level["value"] == "debug":
        err.print(f"[dim]{msg}[/dim]")
