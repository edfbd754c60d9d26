"""The one place that writes to stderr. stdout is reserved for results (JSON, paths)."""
from __future__ import annotations

import sys

from rich.console import Console

# One error = one line, even for long paths (soft_wrap). Redirected to a file or pipe, stderr has no
# width; Rich would then assume 80 columns and wrap every table cell, so logs get a wide page instead.
# Markup and emoji codes are off: error lines echo user text (paths, ids, file contents), and ':x:' in an
# input file printed as an emoji, '[red]' vanished. log() and debug() opt in for our own tags and escape
# what they interpolate.
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False,
              width=None if sys.stderr.isatty() else 160)
_level = {"value": "info"}


def set_level(level: str) -> None:
    _level["value"] = level


def level() -> str:
    return _level["value"]


def log(msg: str) -> None:
    """A status line with rich markup: escape (rich.markup.escape) any user text in it."""
    if _level["value"] != "quiet":
        err.print(msg, markup=True)


def debug(msg: str) -> None:
    if _level["value"] == "debug":
        err.print(f"[dim]{msg}[/dim]", markup=True)


def os_error_line(e: OSError) -> str:
    """'no space left on device: /path' for "[Errno 28] No space left on device: '/path'": what and where."""
    if not e.strerror:
        return str(e) or type(e).__name__
    line = e.strerror[0].lower() + e.strerror[1:]
    if e.filename is not None:
        line += f": {e.filename}"
    if e.filename2 is not None:
        line += f" -> {e.filename2}"
    return line
