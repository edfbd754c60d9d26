"""Reading the dataset's text files: UTF-8 lines whose errors name the file and line, and their sha256.

The data stage reads interaction files and the text stage items.tsv files through `text_lines`; the
runner keys a file-reading stage by the file's `file_sha256`.
"""
from __future__ import annotations

import gc
import hashlib
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

BOM = b"\xef\xbb\xbf"
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")   # not tab, LF or CR


class DataFormatError(ValueError):
    """Malformed input; the message starts with `file:line:`."""


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-blank line; binary or non-UTF-8 content is an error.

    Reads blocks of whole lines (about 16 MiB) and checks each block at once: a line-by-line
    decode and check costs more than the parsing itself."""
    first = 1
    with open(path, "rb") as f:
        while block := f.readlines(1 << 24):
            if first == 1 and block[0].startswith(BOM):
                block[0] = block[0][len(BOM):]
            text = _checked_text(b"".join(block), path, first)
            for lineno, line in enumerate(text.split("\n"), first):
                if line.strip():
                    yield lineno, line
            first += len(block)


def _checked_text(raw: bytes, path: Path, first: int) -> str:
    """raw (whole lines from line `first` on) as text; an error names the line and column."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = first + raw.count(b"\n", 0, e.start), e.start - raw.rfind(b"\n", 0, e.start)
        raise DataFormatError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {col}); "
                              f"is this a binary file?") from None
    bad = CONTROL.search(text)
    if bad:
        line, col = first + text.count("\n", 0, bad.start()), bad.start() - text.rfind("\n", 0, bad.start())
        raise DataFormatError(f"{path}:{line}: control character {bad.group()!r} at column {col}; "
                              f"is this a binary file?")
    return text


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Parsing allocates 1e5-1e6 objects that all stay alive, and the cyclic GC would walk them
    again and again (Yelp parses about 1.5x faster without it). Nothing here makes reference cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
