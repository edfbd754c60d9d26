"""State shared by the CLI's commands: global options, the Runtime, and stdout discipline."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

from pipeline.console import set_level
from schemas.runtime import Runtime, default_cache_dir, default_data_dir

CONTEXT: dict[str, Any] = {}


def apply_globals(*, data_dir: Optional[Path], cache_dir: Optional[Path], debug: bool, quiet: bool, **rest: Any) -> None:
    CONTEXT.clear()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    # The data dir defaults under the *chosen* cache dir, so --cache-dir alone isolates everything.
    data = Path(data_dir) if data_dir else (default_data_dir() if not cache_dir else cache / "datasets")
    CONTEXT.update(rest, data_dir=data, cache_dir=cache, debug=debug)
    set_level("debug" if debug else "quiet" if quiet else "info")


def runtime() -> Runtime:
    c = CONTEXT
    return Runtime(device=c.get("device", "cpu"), threads=c.get("threads"), progress=c.get("progress", True),
                   data_dir=c.get("data_dir", default_data_dir()), cache_dir=c.get("cache_dir", default_cache_dir()),
                   offline=c.get("offline", False), log_level="debug" if c.get("debug") else "info")


def emit(obj: Any, as_json: bool, plain: str = "") -> None:
    """The only writer to stdout: one JSON object with --json, else a short scriptable line."""
    if as_json:
        sys.stdout.write(json.dumps(obj, indent=None, default=str) + "\n")
    elif plain:
        sys.stdout.write(plain.rstrip("\n") + "\n")
    sys.stdout.flush()
