"""`cache gc`: what may be removed from a cache that other processes may be using right now.

Never touched: anything younger than `min_age_s` (a live run's temp files and the objects it has
stored but not yet recorded; `Cache.put` refreshes the mtime of an object it reuses), a lock some
process holds (or that we cannot open: it is not ours to judge), the checkpoint of a run being
computed. Removed: objects no record names, temp files and folders of both kinds (ours `.tmp-*`,
safetensors' own `.tmpXXXXXX`), lock files nobody holds, checkpoints of runs that completed (and,
when asked, of interrupted runs). `--all` also removes every record, object and model file, with the
same exceptions. Each path once; only what was removed is reported.
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
    min_age_s: float = 0.0     # still this old when removed, or spared (a run may have reused it since)


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


def collect(cache: Cache, *, min_age_s: float = MIN_AGE_S, checkpoints: bool = False,
            everything: bool = False) -> list[Doomed]:
    """Files and folders gc would remove now (locks excluded: see `remove_free_locks`). `everything`:
    also every record, model file and object, whether a record names it or not; objects younger than
    min_age_s are still spared while some run is being computed (they may be its unrecorded outputs:
    only a run holding its lock stores objects)."""
    now = time.time()
    live = set() if everything else {ref.digest for rec in cache.runs() for ref in rec.outputs.values()}
    object_age = 0.0 if everything and not any_held(cache) else min_age_s
    doomed: dict[Path, Doomed] = {}
    if everything:
        for p in sorted(cache.root.glob("runs/*/*.json")):
            doomed[p] = Doomed(p, size_of(p), "run record")
        for p in sorted(q for q in (cache.root / "models").rglob("*") if q.is_file() or q.is_symlink()):
            if not any(part.startswith(".tmp") for part in p.relative_to(cache.root).parts):   # being written
                doomed[p] = Doomed(p, size_of(p), "model file")
    for p in cache.objects():
        if p.stem not in live and _old(p, object_age, now):
            doomed[p] = Doomed(p, size_of(p), "object" if everything else "unreferenced object", min_age_s=object_age)
    for pattern in TEMP_GLOBS:
        for p in cache.root.glob(pattern):
            if p not in doomed and _old(p, min_age_s, now) and not _inside(p, doomed):
                doomed[p] = Doomed(p, size_of(p), "stale temp file", min_age_s=min_age_s)
    for ckpt in sorted((cache.root / "checkpoints").glob("*")):
        finished = cache.run_path(ckpt.name).exists()
        if (finished or checkpoints or everything) and ckpt not in doomed and not held(cache, ckpt.name):
            why = "checkpoint of a finished run" if finished else "checkpoint of an interrupted run"
            doomed[ckpt] = Doomed(ckpt, size_of(ckpt), why, key=ckpt.name)
    return sorted(doomed.values(), key=lambda d: str(d.path))


def held(cache: Cache, key: str) -> bool:
    """Whether a live process holds the run lock of `key` (a lock we cannot open counts as held)."""
    path = cache.lock_path(key)
    if not path.exists():
        return False
    lock = FileLock(path)
    try:
        lock.acquire(blocking=False)
    except (Timeout, OSError):
        return True
    lock.release()
    return False


def any_held(cache: Cache) -> bool:
    return any(held(cache, lock.stem) for lock in cache.root.glob("runs/*/*.lock"))


def _inside(path: Path, doomed: dict[Path, Doomed]) -> bool:
    return any(parent in doomed for parent in path.parents)


def remove(cache: Cache, doomed: list[Doomed]) -> list[Doomed]:
    """Remove what `collect` found, re-checking each file's age (a run may have reused it since) and
    taking each checkpoint's run lock (a run may be resuming from it). Returns what was removed: only
    that is reported."""
    removed, now = [], time.time()
    for d in doomed:
        if d.key is None:
            if not _old(d.path, d.min_age_s, now):
                continue
            _delete(d.path)
        else:
            cache.lock_path(d.key).parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(cache.lock_path(d.key))
            try:
                lock.acquire(blocking=False)
            except (Timeout, OSError):
                continue   # that run is being computed right now (or its lock is not ours)
            try:
                _delete(d.path)
            finally:
                lock.release()
        removed.append(d)
    return removed


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
        except (Timeout, OSError):
            continue   # a live run holds it, or it is another user's
        try:
            if not dry_run:
                path.with_suffix(".owner").unlink(missing_ok=True)
                path.unlink(missing_ok=True)
            removed += 1
        finally:
            lock.release()
    return removed
