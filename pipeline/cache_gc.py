"""`cache gc`: what may be removed from a cache that other processes may be using right now.

Never touched: anything younger than `min_age_s` (a live run's temp files and the objects it has
stored but not yet recorded; `Cache.put` refreshes the mtime of an object it reuses), a lock some
process holds, the checkpoint of a run being computed. Removed: objects no record names, temp
files and folders of both kinds (ours `.tmp-*`, safetensors' own `.tmpXXXXXX`), lock files nobody
holds, checkpoints of runs that completed (and, when asked, of interrupted runs). Each path once.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.cache import Cache

MIN_AGE_S = 3600.0
TEMP_GLOBS = ["*/.tmp*", "*/*/.tmp*", "*/*/*/.tmp*"]   # objects/ab, runs/ab, models, models/digests/ab, checkpoints/k


@dataclass(frozen=True)
class Doomed:
    path: Path
    size: int
    why: str
    key: str | None = None     # a checkpoint: removed only under its run's lock


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (each file once)."""
    try:
        if path.is_dir() and not path.is_symlink():
            return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        return path.lstat().st_size
    except OSError:
        return 0   # removed meanwhile by whoever wrote it


def _old(path: Path, min_age_s: float, now: float) -> bool:
    try:
        return now - path.lstat().st_mtime >= min_age_s
    except OSError:
        return False


def collect(cache: Cache, *, min_age_s: float = MIN_AGE_S, checkpoints: bool = False) -> list[Doomed]:
    """Files and folders gc would remove now (locks excluded: see `remove_free_locks`)."""
    now = time.time()
    live = {ref.digest for rec in cache.runs() for ref in rec.outputs.values()}
    doomed: dict[Path, Doomed] = {}
    for p in cache.objects():
        if p.stem not in live and _old(p, min_age_s, now):
            doomed[p] = Doomed(p, size_of(p), "unreferenced object")
    for pattern in TEMP_GLOBS:
        for p in cache.root.glob(pattern):
            if p not in doomed and _old(p, min_age_s, now) and not _inside(p, doomed):
                doomed[p] = Doomed(p, size_of(p), "stale temp file")
    for ckpt in sorted((cache.root / "checkpoints").glob("*")):
        finished = cache.run_path(ckpt.name).exists()
        if (finished or checkpoints) and ckpt not in doomed:
            why = "checkpoint of a finished run" if finished else "checkpoint of an interrupted run"
            doomed[ckpt] = Doomed(ckpt, size_of(ckpt), why, key=ckpt.name)
    return sorted(doomed.values(), key=lambda d: str(d.path))


def _inside(path: Path, doomed: dict[Path, Doomed]) -> bool:
    return any(parent in doomed for parent in path.parents)


def remove(cache: Cache, doomed: list[Doomed], min_age_s: float) -> int:
    """Remove what `collect` found, re-checking each file's age (a run may have reused it since)
    and taking each checkpoint's run lock (a run may be resuming from it). Returns bytes freed."""
    freed, now = 0, time.time()
    for d in doomed:
        if d.key is None:
            if not _old(d.path, min_age_s, now):
                continue
            _delete(d.path)
        else:
            cache.lock_path(d.key).parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(cache.lock_path(d.key))
            try:
                lock.acquire(blocking=False)
            except Timeout:
                continue   # that run is being computed right now
            try:
                _delete(d.path)
            finally:
                lock.release()
        freed += d.size
    return freed


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_free_locks(cache: Cache, dry_run: bool) -> int:
    """Delete lock files (and owner files of dead holders) that no process holds. Unlinking under
    our own hold is safe: filelock notices an unlinked inode and retries on a fresh file."""
    removed = 0
    for path in sorted(cache.root.glob("runs/*/*.lock")):
        lock = FileLock(path)
        try:
            lock.acquire(blocking=False)
        except Timeout:
            continue   # a live run holds it
        try:
            if not dry_run:
                path.with_suffix(".owner").unlink(missing_ok=True)
                path.unlink(missing_ok=True)
            removed += 1
        finally:
            lock.release()
    return removed
