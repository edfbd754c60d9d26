"""Write a file so that readers see the old one or the new one, never half of one, and an
interruption at any line leaves no temp file behind. A failure names the file it was writing.

`tempfile.mkstemp` creates its file before it returns, so a signal that lands between it and the
`try` that removes the file on failure leaked a `.tmp-*` beside the cache's objects, records and
checkpoints (seen in CI: a SIGTERM during a checkpoint save). Here the temp *name* is chosen first
and the file is created inside the `try`: whatever stops the write, the `finally` removes it.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable


def temp_beside(path: Path, prefix: str = ".tmp-") -> Path:
    """A name next to `path` that no other writer picks (pid + 64 random bits); not created."""
    return path.with_name(f"{prefix}{os.getpid()}-{secrets.token_hex(8)}{path.suffix}")


def write_atomically(path: Path, write: Callable[[Path], None], prefix: str = ".tmp-") -> None:
    """`write(tmp)`, then rename tmp onto `path` (same folder, so the rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path, prefix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        # A failed write (a full disk: ENOSPC) names no file, or names our temp name: name the file
        # being written, so the one error line says where.
        if e.errno is not None and (e.filename is None or str(e.filename) == str(tmp)):
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)     # a no-op after the rename
