"""Runtime: how to run (device, threads, dirs, progress), never what to compute. Never hashed."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field

from schemas.common import Frozen


def default_cache_dir() -> Path:
    return Path(os.environ.get("TSLREC_CACHE_DIR") or Path.home() / ".cache" / "tslrec")


def default_data_dir() -> Path:
    env = os.environ.get("TSLREC_DATA_DIR")
    return Path(env) if env else default_cache_dir() / "datasets"


# (description, total) -> a context manager with advance(n=1, **fields) and update(**fields).
Tracker = Callable[[str, "int | None"], Any]


class NoProgress:
    """The tracker when none is handed in: every call does nothing."""

    def __enter__(self) -> "NoProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def advance(self, n: int = 1, **fields: Any) -> None:
        return None

    def update(self, **fields: Any) -> None:
        return None


class Runtime(Frozen):
    device: str = Field(default="cpu", description="torch device: 'cpu', 'cuda', 'cuda:1', ...")
    threads: int | None = Field(default=None, description="torch intra-op threads; None keeps torch's default.")
    progress: bool = Field(default=True, description="Show rich progress bars on stderr.")
    data_dir: Path = Field(default_factory=default_data_dir, description="Where datasets live.")
    cache_dir: Path = Field(default_factory=default_cache_dir, description="Content-addressed cache root.")
    checkpoint_dir: Path | None = Field(default=None, description="Where a training stage keeps its per-epoch resume point (set by the runner under the run's key; None: no checkpoints).")
    offline: bool = Field(default=False, description="Never download; say which file to put where.")
    log_level: Literal["quiet", "info", "debug"] = Field(default="info", description="stderr verbosity.")
    tracker: Tracker | None = Field(default=None, exclude=True, description="Makes progress handles (set by the CLI layer, e.g. pipeline.progress.make_tracker); None shows no progress.")
    rank: int = Field(default=0, ge=0, description="This process's rank under torchrun (0 alone touches the cache and prints).")
    world: int = Field(default=1, ge=1, description="Processes under torchrun; 1 without it.")

    def track(self, description: str, total: int | None) -> Any:
        """A progress handle for long loops: `with rt.track("epoch", n) as t: t.advance(1, loss=...)`.

        Stages call this instead of printing; the contract does not know how progress is drawn: the
        caller hands in `tracker` (the CLI's draws bars on stderr)."""
        if self.tracker is None or not self.progress:
            return NoProgress()
        return self.tracker(description, total)
