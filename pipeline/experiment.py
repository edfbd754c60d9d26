"""`tslrec run all`: the whole pipeline and the variant comparison (placeholder until train exists)."""
from __future__ import annotations

from typing import Any

from pipeline.console import log
from pipeline.registry import ORDER


def run_all(runner: Any, cfg: Any, *, seeds: int, backbones: list[str] | None, variants: list[str] | None) -> dict[str, Any]:
    import importlib.util

    done = {}
    for stage in ORDER:
        if importlib.util.find_spec(f"stages.{stage}") is None:
            log(f"[yellow]stage {stage} is not implemented yet; stopping after {list(done)}[/yellow]")
            break
        done[stage] = runner.run(stage, cfg).model_dump(mode="json")
    return {"stages": done, "stopped_before": next((s for s in ORDER if s not in done), None)}
