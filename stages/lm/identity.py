"""What a model name stands for, for the cache key: a name or a path alone would serve stale
results after the weights behind it change (see stages/lm/load.py for what names exist).

- a packaged name (`minilm-l6`, `smollm2-135m`): its pip package's version;
- a local model folder or file (`.gguf` too): sha256 over every non-hidden file's bytes, each file's
  digest remembered under `<cache_dir>/models/digests` by (path, size, mtime): read once, not per run;
- a hub id: the revision it resolves to (asked of the hub online, else the local hub cache's
  refs/main), or `@unresolved` when neither knows;
- `tiny-bert` / `tiny-llama`: their seed and the tokenizer package's version.
"""
from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from stages.core.atomic import write_atomically
from stages.lm.load import PACKAGED, TINY, TINY_SEED, _offline


def model_identity(name: str, cache_dir: Path | str, offline: bool = False) -> str:
    """What `name` resolves to: the package version of a packaged model, a digest of the bytes of a
    local folder's or file's files, the resolved revision of a hub id ("...@unresolved" when offline
    and not in the local hub cache), or the seed of a tiny random model."""
    if name in TINY:
        return f"{name}:seed={TINY_SEED}:tokenizer={_package_version('minilm-l6')}"
    if name in PACKAGED:
        return _package_version(name)
    path = Path(name).expanduser()
    if path.exists():
        return f"files:{files_digest(path, Path(cache_dir))}"
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        return f"hub:{name}@{hub_revision(name, offline) or 'unresolved'}"
    return f"unknown:{name}"      # load_lm refuses it with the full explanation


def _package_version(name: str) -> str:
    pip_name = PACKAGED[name][1]
    try:
        return f"{pip_name}=={version(pip_name)}"
    except PackageNotFoundError:
        return f"{pip_name}==absent"


def files_digest(path: Path, cache_dir: Path) -> str:
    """sha256 over (relative name, content digest) of every non-hidden file under `path` (or of
    the file itself): weights, config and tokenizer all change what the model computes."""
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    h = hashlib.sha256()
    for f in files:
        rel = f.name if f == path else f.relative_to(path).as_posix()
        h.update(f"{rel}\0{file_digest(f, cache_dir)}\n".encode())
    return h.hexdigest()


def file_digest(path: Path, cache_dir: Path) -> str:
    """sha256 of a file's bytes, remembered under <cache_dir>/models/digests by (path, size, mtime):
    a multi-GB weight file is read once, not on every run."""
    st = path.stat()
    stamp = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    memo = cache_dir / "models" / "digests" / stamp[:2] / f"{stamp}.txt"
    if memo.is_file():
        known = memo.read_text().strip()
        if len(known) == 64:
            return known
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    write_atomically(memo, lambda tmp: tmp.write_text(digest))   # a reader never sees half a digest
    return digest


def hub_revision(repo_id: str, offline: bool) -> str | None:
    """The commit a hub id resolves to: asked of the hub when online, else read from the local
    hub cache's refs/main; None when neither knows."""
    if not _offline(offline):
        try:
            from huggingface_hub import HfApi

            return HfApi().model_info(repo_id, timeout=10).sha
        except Exception:  # noqa: BLE001 - no network or no such repo: fall back to the local cache
            pass
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        ref = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
        return ref.read_text().strip() or None
    except (ImportError, OSError):
        return None
