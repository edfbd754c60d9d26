"""State shared by the CLI's commands: global options, the Runtime (with its progress tracker), stdout
discipline, `run STAGE --help` with the stage's fields, the version and shell completion of stage names."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

from typer.core import TyperCommand

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


def progress_tracker(description: str, total: int | None) -> Any:
    """Runtime.tracker for the CLI: rich (progress) is imported only when a stage starts a loop."""
    from pipeline.progress import make_tracker

    return make_tracker(description, total)


def runtime() -> Runtime:
    c = CONTEXT
    return Runtime(device=c.get("device", "cpu"), threads=c.get("threads"), progress=c.get("progress", True),
                   data_dir=c.get("data_dir", default_data_dir()), cache_dir=c.get("cache_dir", default_cache_dir()),
                   offline=c.get("offline", False), log_level="debug" if c.get("debug") else "info",
                   tracker=progress_tracker)


def emit(obj: Any, as_json: bool, plain: str = "") -> None:
    """The only writer to stdout: one JSON object with --json, else a short scriptable line."""
    if as_json:
        sys.stdout.write(json.dumps(obj, indent=None, default=str) + "\n")
    elif plain:
        sys.stdout.write(plain.rstrip("\n") + "\n")
    sys.stdout.flush()


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tslrec")
    except PackageNotFoundError:
        return "unknown (not installed)"


class StageHelpCommand(TyperCommand):
    """`run STAGE --help`: the generic help, then every config field of that stage."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # --help is eager: it fires before STAGE is parsed, so note the stage here.
        from pipeline.registry import STAGES

        ctx.meta["help_stage"] = next((a for a in args if a in STAGES), None)
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        super().format_epilog(ctx, formatter)
        from pipeline.config_help import stage_fields

        stage = ctx.meta.get("help_stage")
        rows = stage_fields(stage) if stage and stage != "all" else []
        if rows:
            with formatter.section(f"Config fields of {stage} (--set FIELD=VALUE; `tslrec config {stage} --json`)"):
                formatter.write_dl([(f"{r['name']}: {r['type']} = {r['default']!r}", r["description"]) for r in rows])


def complete_stage(incomplete: str) -> list[str]:
    """Shell completion of a stage name."""
    from pipeline.registry import ORDER

    return [s for s in ORDER if s.startswith(incomplete)]


def complete_run_stage(incomplete: str) -> list[str]:
    """Shell completion of `run STAGE`: a stage or 'all'."""
    return complete_stage(incomplete) + (["all"] if "all".startswith(incomplete) else [])
