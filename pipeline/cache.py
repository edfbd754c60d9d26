"""Content-addressed store: safetensors objects by tensor digest, run manifests by key.

Layout (DVC-run-cache style):  <root>/objects/ab/<digest>.safetensors
                               <root>/runs/ab/<key>.json
Every write goes to a temp file in the same folder, then os.replace, so a crash never leaves
a half-written object or manifest under its final name.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from schemas.common import ArtifactRef, RunRecord

if TYPE_CHECKING:   # torch is imported where tensors are touched: `tslrec cache ls` must start fast
    import torch


def file_sha256(path: Path) -> str:
    """The data stage's hashing of raw files (one definition), imported only when a file is hashed."""
    from stages.data import file_sha256 as data_file_sha256

    return data_file_sha256(path)


class CorruptObject(Exception):
    """An object is missing, unreadable, or its tensors no longer hash to its digest."""


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


def holder_alive(lock: Path) -> bool:
    try:
        pid = int(lock.read_text() or "0")
    except (OSError, ValueError):
        return True           # being written right now: assume alive, look again next poll
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Cache:
    def __init__(self, root: Path):
        self.root = Path(root)

    # -- objects -------------------------------------------------------------------------
    def object_path(self, digest: str) -> Path:
        return self.root / "objects" / digest[:2] / f"{digest}.safetensors"

    def put(self, kind: str, tensors: dict[str, torch.Tensor]) -> ArtifactRef:
        from safetensors.torch import save_file

        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        digest = tensor_digest(tensors)
        path = self.object_path(digest)
        if not path.exists():
            _atomic_write(path, lambda tmp: save_file(tensors, tmp))
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

    # -- run manifests -------------------------------------------------------------------
    def run_path(self, key: str) -> Path:
        return self.root / "runs" / key[:2] / f"{key}.json"

    def get_run(self, key: str) -> RunRecord | None:
        path = self.run_path(key)
        if not path.exists():
            return None
        try:
            return RunRecord.model_validate_json(path.read_text())
        except Exception:
            return None  # a manifest we cannot read is a miss, not a crash

    def put_run(self, record: RunRecord) -> None:
        text = record.model_copy(update={"cached": False}).model_dump_json(indent=1)
        _atomic_write(self.run_path(record.key), lambda tmp: Path(tmp).write_text(text))

    @contextmanager
    def claim(self, key: str, poll: float = 2.0) -> Iterator[bool]:
        """Exclusive right to compute `key` across processes (a lock file with our pid).

        Yields True if we had to wait for another live process (whose result may now be cached),
        so two terminals running the same pipeline share work instead of doing it twice.
        A lock left by a dead process is taken over."""
        lock = self.run_path(key).with_suffix(".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        waited = False
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                if not holder_alive(lock):
                    lock.unlink(missing_ok=True)
                    continue
                waited = True
                time.sleep(poll)
        try:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            yield waited
        finally:
            lock.unlink(missing_ok=True)

    def runs(self) -> Iterator[RunRecord]:
        for path in sorted((self.root / "runs").glob("*/*.json")):
            rec = self.get_run(path.stem)
            if rec is not None:
                yield rec

    def find_run(self, prefix: str) -> RunRecord | None:
        hits = [p for p in (self.root / "runs").glob(f"{prefix[:2]}/{prefix}*.json")] if len(prefix) >= 2 else []
        if len(hits) != 1:
            return None
        return self.get_run(hits[0].stem)

    def objects(self) -> Iterator[Path]:
        yield from sorted((self.root / "objects").glob("*/*.safetensors"))
