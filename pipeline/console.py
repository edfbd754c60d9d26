"""The one place that writes to stderr. stdout is reserved for results (JSON, paths)."""
from __future__ import annotations

import sys

from rich.console import Console

# One error = one line, even for long paths (soft_wrap). Redirected to a file or pipe, stderr has no
# width; Rich would then assume 80 columns and wrap every table cell, so logs get a wide page instead.
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160)
_level = {"value": "info"}


def set_level(level: str) -> None:
    _level["value"] = level


def log(msg: str) -> None:
    if _level["value"] != "quiet":
        err.print(msg)


def debug(msg: str) -> None:
    if _level["value"] == "debug":
        err.print(f"[dim]{msg}[/dim]")
