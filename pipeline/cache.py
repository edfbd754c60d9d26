"""Content-addressed store: safetensors objects by tensor digest, run manifests by key.

Layout (DVC-run-cache style):  <root>/objects/ab/<digest>.safetensors
                               <root>/runs/ab/<key>.json
                               <root>/runs/ab/<key>.lock (+ .owner while held)
                               <root>/checkpoints/<key>/ (an unfinished run's resume point)
Every write goes to a temp file in the same folder, then os.replace, so a crash never leaves
a half-written object or manifest under its final name.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from schemas.common import ArtifactRef, RunRecord
from stages.core.atomic import write_atomically

if TYPE_CHECKING:   # torch is imported where tensors are touched: `tslrec cache ls` must start fast
    import torch


class CorruptObject(Exception):
    """An object is missing, unreadable, or its tensors no longer hash to its digest."""


class CorruptRecord(Exception):
    """A run record is unreadable, does not parse, or no longer matches its own digest."""


class CacheLockError(Exception):
    """A run's lock file cannot be opened (its message says which file and why)."""


def canonical_json(x: Any) -> str:
    return json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_text(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def cache_key(parts: dict[str, Any]) -> str:
    """key = sha256(canonical_json({stage, stage_version, code_digest, config, input_digests, env}))."""
    return sha256_text(canonical_json(parts))


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """Digest over names, dtypes, shapes and bytes (not file bytes: safetensors metadata order varies)."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(canonical_json([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def code_digest(modules: list[str]) -> str:
    """sha256 of the ASTs of the given modules: comments and formatting do not change it."""
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(name.encode() + b"\0" + _module_ast(name).encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _module_ast(name: str) -> str:
    """Read once per process: the digest describes the code this process runs, even if the file
    is edited while a long pipeline is under way (and AST dumps are slow enough to matter on hits)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ValueError(f"cannot find module {name!r} for the code digest")
    return ast.dump(ast.parse(Path(spec.origin).read_text()))


def _owner_text() -> str:
    return canonical_json({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})


def describe_owner(owner: Path) -> str:
    """'pid 123 on host, 42 s ago' from a lock's owner file (or what little can be said without it)."""
    try:
        info = json.loads(owner.read_text())
        return f"pid {info['pid']} on {info['host']}, {time.time() - float(info['since']):.0f} s ago"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class Cache:
    def __init__(self, root: Path):
        self.root = Path(root)

    # -- objects -------------------------------------------------------------------------
    def object_path(self, digest: str) -> Path:
        return self.root / "objects" / digest[:2] / f"{digest}.safetensors"

    def put(self, kind: str, tensors: dict[str, torch.Tensor]) -> ArtifactRef:
        from safetensors.torch import save

        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        digest = tensor_digest(tensors)
        path = self.object_path(digest)
        if not path.exists():
            # Bytes in memory, written by Python: on a full disk safetensors' own writer says "I/O
            # error: ... (os error 28)" and names no file; this raises OSError(ENOSPC) with the path.
            data = save(tensors)
            write_atomically(path, lambda tmp: tmp.write_bytes(data))
        else:
            with contextlib.suppress(OSError):   # a read-only cache still serves; gc then judges by age
                os.utime(path)   # fresh again: `cache gc` spares recent objects that no record names yet
        return ArtifactRef(kind=kind, digest=digest, path=str(path))

    def get(self, ref: ArtifactRef) -> dict[str, torch.Tensor]:
        """Load and verify an object; raise CorruptObject rather than trust a bad file."""
        from safetensors.torch import load_file

        path = self.object_path(ref.digest)
        if not path.exists():
            raise CorruptObject(f"object {ref.kind} {ref.digest[:12]} is missing ({path})")
        try:
            tensors = load_file(path)
        except Exception as e:  # truncated or overwritten file
            raise CorruptObject(f"object {ref.kind} {ref.digest[:12]} is unreadable: {e}") from e
        if tensor_digest(tensors) != ref.digest:
            raise CorruptObject(f"object {ref.kind} {ref.digest[:12]} does not match its digest")
        return tensors

    def discard(self, digest: str) -> None:
        """Remove a bad object so the next put() writes it afresh."""
        self.object_path(digest).unlink(missing_ok=True)

    def checkpoint_dir(self, key: str) -> Path:
        """Where the run `key` keeps its per-epoch resume point while it is being computed."""
        return self.root / "checkpoints" / key

    # -- run manifests -------------------------------------------------------------------
    def run_path(self, key: str) -> Path:
        return self.root / "runs" / key[:2] / f"{key}.json"

    def read_run(self, key: str) -> RunRecord | None:
        """The record stored under `key`, None if there is none; CorruptRecord if it cannot be trusted.

        A record whose content no longer hashes to its record_digest (one flipped digit in a
        metric) is corrupt, and so is a record without one: deleting the digest line must not turn
        an edited record into a trusted one (the runner recomputes it)."""
        return self._read_record(self.run_path(key), key)

    @staticmethod
    def _read_record(path: Path, key: str) -> RunRecord | None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise CorruptRecord(f"run record {key[:12]} is unreadable ({e})") from e
        try:
            rec = RunRecord.model_validate_json(text)
        except ValueError as e:          # pydantic's ValidationError: name the first bad field
            first = e.errors()[0] if hasattr(e, "errors") else {"loc": (), "msg": str(e)}
            where = ".".join(str(p) for p in first["loc"]) or "JSON"
            raise CorruptRecord(f"run record {key[:12]} does not parse ({where}: {first['msg']})") from e
        if rec.key != key:
            raise CorruptRecord(f"run record {key[:12]} holds the record of another key ({rec.key[:12]})")
        problem = rec.digest_problem(json.loads(text))
        if problem is not None:
            raise CorruptRecord(f"run record {key[:12]} {problem}")
        return rec

    def get_run(self, key: str) -> RunRecord | None:
        """The record under `key` if it can be trusted, else None (a bad record is a miss, not a crash)."""
        try:
            return self.read_run(key)
        except CorruptRecord:
            return None

    def put_run(self, record: RunRecord) -> None:
        text = record.sealed().model_copy(update={"cached": False}).model_dump_json(indent=1)
        write_atomically(self.run_path(record.key), lambda tmp: tmp.write_text(text))

    def lock_path(self, key: str) -> Path:
        return self.run_path(key).with_suffix(".lock")

    @contextmanager
    def claim(self, key: str, label: str = "") -> Iterator[bool]:
        """Exclusive right to compute `key` across processes.

        An flock through the `filelock` package on runs/ab/<key>.lock: the kernel releases it when
        its holder exits in any way (kill -9 included), so a dead or reused PID can never block a
        run. The holder writes who it is to <key>.owner and removes it on release; finding that file
        once we hold the lock means its writer died holding it: reported with its age, taken over.
        Yields True if we had to wait for another process (whose result may now be cached), so two
        terminals running the same pipeline share work instead of doing it twice."""
        from filelock import FileLock, Timeout
        from rich.markup import escape

        from pipeline.console import log, os_error_line

        lock_file = self.lock_path(key)
        owner = lock_file.with_suffix(".owner")
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_file)
        what = f"{label} {key[:12]}".strip()
        waited = False
        try:
            try:
                lock.acquire(blocking=False)
            except Timeout:
                waited = True
                log(f"[yellow]waiting[/yellow]   for {what}: being computed by {escape(describe_owner(owner))}")
                lock.acquire()
        except OSError as e:   # e.g. a lock file another user created: say which and what to do
            raise CacheLockError(f"cannot take the lock of {what} ({os_error_line(e)}); the cache dir may belong to "
                                 f"another user: use your own --cache-dir, or fix the file's permissions") from e
        try:
            if owner.exists():
                log(f"[yellow]stale lock[/yellow] on {what} (left by {escape(describe_owner(owner))}, which died); taking it over")
            write_atomically(owner, lambda tmp: tmp.write_text(_owner_text()))
            yield waited
        finally:
            try:
                owner.unlink(missing_ok=True)
            finally:
                lock.release()

    def runs(self) -> Iterator[RunRecord]:
        """Every trustworthy record (scan_runs also names the others)."""
        for _, rec, _ in self.scan_runs():
            if rec is not None:
                yield rec

    def scan_runs(self) -> Iterator[tuple[Path, RunRecord | None, CorruptRecord | None]]:
        """(path, record, None) for every record file, or (path, None, problem) where it cannot be trusted."""
        for path in sorted((self.root / "runs").glob("*/*.json")):
            try:
                rec = self._read_record(path, path.stem)
            except CorruptRecord as e:
                yield path, None, e
                continue
            if rec is not None:
                yield path, rec, None

    def find_run(self, prefix: str) -> RunRecord | None:
        hits = [p for p in (self.root / "runs").glob(f"{prefix[:2]}/{prefix}*.json")] if len(prefix) >= 2 else []
        if len(hits) != 1:
            return None
        return self.get_run(hits[0].stem)

    def objects(self) -> Iterator[Path]:
        """Stored objects; never a temp file (`.tmp-*.safetensors` is being written right now)."""
        yield from sorted(p for p in (self.root / "objects").glob("*/*.safetensors") if not p.name.startswith("."))
