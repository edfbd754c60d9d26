"""How a cached run reads in a listing: its stage, dataset, wall time and what it changed from the defaults."""
from __future__ import annotations

from typing import Any

from pipeline.registry import STAGES
from schemas.common import RunRecord
from schemas.pipeline import PipelineConfig


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def sections(rec: RunRecord) -> list[str]:
    """The config sections that can change this run: its stage and the stages upstream of it."""
    try:
        cfg = PipelineConfig.model_validate(rec.pipeline)
    except Exception:   # a record from an older schema: its own section is still meaningful
        return [rec.stage]
    seen, todo = [], [rec.stage]
    while todo:
        stage = todo.pop()
        if stage in STAGES and stage not in seen:
            seen.append(stage)
            todo += STAGES[stage].deps(cfg)
    return seen


def changed_fields(rec: RunRecord) -> list[str]:
    """'pretrain.trainer.epochs=2' for each field of the run's sections that differs from the default
    (the dataset has a column of its own)."""
    defaults = flatten(PipelineConfig().model_dump(mode="json"))
    mine = flatten({s: rec.pipeline.get(s, {}) for s in sections(rec)})
    return [f"{k}={v}" for k, v in sorted(mine.items()) if k != "data.dataset" and defaults.get(k, object()) != v]


def run_row(rec: RunRecord) -> dict[str, Any]:
    return {"key": rec.key, "stage": rec.stage, "dataset": rec.pipeline.get("data", {}).get("dataset", "?"),
            "created": rec.created, "wall_s": float(rec.wall_s), "changed": changed_fields(rec)}
