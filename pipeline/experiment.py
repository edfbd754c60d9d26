"""`tslrec run all`: the pipeline once, then train[variant] for each backbone x variant x seed.

Not a stage: it only asks the runner for stage results and summarizes them. The summary is also
saved under <cache>/experiments/ so `tslrec report` can find it.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from pipeline.cache import cache_key
from pipeline.console import err, log
from pipeline.overrides import deep_set
from pipeline.stats import METRICS, significance, summarize
from schemas.pipeline import PipelineConfig

UPSTREAM_OF = {"base": [], "ci": ["pretrain", "group"], "tslrec": ["pretrain", "group", "sft", "augment"]}


def train_configs(cfg: PipelineConfig, *, seeds: int, backbones: list[str], variants: list[str]) -> list[PipelineConfig]:
    out = []
    tree = cfg.model_dump(mode="json")
    for backbone in backbones:
        for variant in variants:
            for i in range(seeds):
                deep_set(tree, ["train", "variant"], variant)
                deep_set(tree, ["train", "backbone", "name"], backbone)
                deep_set(tree, ["train", "trainer", "seed"], cfg.train.trainer.seed + i)
                out.append(PipelineConfig.model_validate(tree))
    return out


def is_pretrain_twin(cfg: PipelineConfig) -> bool:
    """A base run with exactly pretrain's backbone and trainer config (seed included) trains the same
    model as `pretrain`: both build it through `stages.trainer.train_backbone` from the same seed
    with a plain item table (tests/test_experiment.py checks the two give identical results)."""
    return cfg.train.variant == "base" and cfg.train.backbone == cfg.pretrain.backbone \
        and cfg.train.trainer == cfg.pretrain.trainer


def train_run(runner: Any, cfg: PipelineConfig) -> tuple[Any, dict[str, Any]]:
    """(record, result) of one train config; a pretrain twin reuses the pretrain run instead of
    training the same model again (one of the four trainings of a one-seed `run all`)."""
    if is_pretrain_twin(cfg):
        rec = runner.run("pretrain", cfg)
        return rec, {**rec.result, "variant": "base"}
    rec = runner.run("train", cfg)
    return rec, rec.result


def run_all(runner: Any, cfg: PipelineConfig, *, seeds: int = 1, backbones: list[str] | None = None,
            variants: list[str] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    backbones = backbones or [cfg.train.backbone.name]
    variants = variants or ["base", "ci", "tslrec"]
    for v in variants:
        if v not in UPSTREAM_OF:
            raise ValueError(f"unknown variant {v!r}; choose from {', '.join(UPSTREAM_OF)}")
    needed = ["data"] + [s for s in ["pretrain", "group", "sft", "augment"] if any(s in UPSTREAM_OF[v] for v in variants)]
    tcfgs = train_configs(cfg, seeds=seeds, backbones=backbones, variants=variants)
    total = len(needed) + len(tcfgs)
    upstream = {}
    for i, s in enumerate(needed, 1):
        log(f"[bold]stage {i} of {total}[/bold]: {s}")
        upstream[s] = runner.run(s, cfg)
    runs = []
    for i, tcfg in enumerate(tcfgs, len(needed) + 1):
        t = tcfg.train
        log(f"[bold]stage {i} of {total}[/bold]: train {t.variant} {t.backbone.name} seed {t.trainer.seed}")
        rec, r = train_run(runner, tcfg)
        runs.append({"backbone": r["backbone"], "variant": r["variant"], "seed": r["seed"], "key": rec.key, "stage": rec.stage,
                     "test": r["test"], "test_alt": r.get("test_alt"), "valid": r["valid"], "best_epoch": r["best_epoch"],
                     "seconds_per_epoch": r["seconds_per_epoch"], "cached": rec.cached})
    rows = summarize(runs)
    summary = {
        "dataset": cfg.data.dataset,
        "mask_history": cfg.train.trainer.mask_history,
        "upstream": {s: {"key": rec.key, "result": rec.result, "wall_s": rec.wall_s, "cached": rec.cached}
                     for s, rec in upstream.items()},
        "runs": runs, "summary": rows, "significance": significance(rows),
        "pipeline": cfg.model_dump(mode="json"), "wall_s": round(time.perf_counter() - t0, 2),
    }
    summary["experiment"] = save_experiment(runner.rt.cache_dir, summary)
    print_table(summary)
    summary["table_tsv"] = table_tsv(summary)
    return summary


def save_experiment(cache_dir: Path, summary: dict[str, Any]) -> str:
    """Store the summary under experiments/<dataset>-<key>.json (atomic), keyed by its train runs."""
    key = cache_key({"dataset": summary["dataset"], "runs": sorted(r["key"] for r in summary["runs"])})[:16]
    path = Path(cache_dir) / "experiments" / f"{summary['dataset']}-{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump({k: v for k, v in summary.items() if k != "experiment"}, f, indent=1)
    os.replace(tmp, path)
    return str(path)


def print_table(summary: dict[str, Any]) -> None:
    mask = "history masked" if summary["mask_history"] else "no history masking"
    table = Table("backbone", "variant", "seeds", *[m.upper().replace("HR", "HR@").replace("NDCG", "NDCG@") for m in METRICS],
                  "s/epoch", title=f"{summary['dataset']}: test metrics, mean ± std over seeds ({mask})")
    for row in summary["summary"]:
        cells = [f"{row['mean'][m]:.4f}" + (f" ± {row['std'][m]:.4f}" if row["n_seeds"] > 1 else "") for m in METRICS]
        table.add_row(row["backbone"], row["variant"], str(row["n_seeds"]), *cells, f"{row['seconds_per_epoch']:.1f}")
    err.print(table)
    for s in summary["significance"]:
        p = "n/a (needs >= 2 seeds)" if s["p"] is None else f"{s['p']:.3g}"
        log(f"{s['backbone']} tslrec vs {s['vs']} on {s['metric']}: diff {s['diff']:+.4f}, p = {p}")


def table_tsv(summary: dict[str, Any]) -> str:
    lines = ["\t".join(["backbone", "variant", "seeds", *METRICS])]
    for row in summary["summary"]:
        lines.append("\t".join([row["backbone"], row["variant"], str(row["n_seeds"]),
                                *[f"{row['mean'][m]:.4f}" for m in METRICS]]))
    return "\n".join(lines)
