"""`tslrec run all`: the pipeline once, then train[variant] for each backbone x variant x seed.

Not a stage: it only asks the runner for stage results and summarizes them. The summary is also
saved under <cache>/experiments/ so `tslrec report` can find it.

The train runs are independent: on the CPU the uncached ones train at once in worker processes, the threads
split between them (pipeline/concurrent.py; `jobs`: how many at most, None 'auto', 1 one after another).

Seeds: by default only the downstream training varies with the seed; pretrain, group, sft and
augment run once (at their configured seeds) and every seed's train run shares them. With
`reseed_chain`, seed s re-runs the whole chain: pretrain, group (k-means), sft and augment with
seed s too (augment has no seed; it follows its sft), so the spread over seeds, and the t-tests,
include the language-model stages' variance. The experiment JSON says which (`seed_mode`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.table import Table

from pipeline.cache import cache_key
from pipeline.concurrent import compute_concurrently
from pipeline.console import err, log
from pipeline.data_parallel import compute_data_parallel
from pipeline.overrides import ConfigError, deep_set, format_validation
from pipeline.precision import resolve_precision
from pipeline.registry import ORDER
from pipeline.upstream import lineage
from pipeline.stats import METRICS, significance, summarize, ttest_p
from schemas.names import VARIANTS
from schemas.pipeline import PipelineConfig
from stages.core.atomic import write_atomically

def upstream_stages(tcfgs: list[PipelineConfig]) -> list[str]:
    """The stages the train runs of `tcfgs` are computed from, in the registry's order: derived from each
    stage's own dependencies (so train.source=pretrain computes no sft or augment, source=text no sft)."""
    needed = {s for c in tcfgs for s in lineage("train", c) if s != "train"}
    return [s for s in ORDER if s in needed]


CHAIN_SEEDS = [["pretrain", "trainer", "seed"], ["group", "seed"], ["sft", "seed"]]   # re-seeded with reseed_chain


def seed_configs(cfg: PipelineConfig, seeds: int, reseed_chain: bool) -> list[PipelineConfig]:
    """One pipeline config per seed s = train seed + i: train.trainer.seed = s, and with
    reseed_chain the upstream stages' seeds too (pretrain.trainer.seed, group.seed, sft.seed)."""
    out = []
    for i in range(seeds):
        tree = cfg.model_dump(mode="json")
        seed = cfg.train.trainer.seed + i
        for path in [["train", "trainer", "seed"], *(CHAIN_SEEDS if reseed_chain else [])]:
            deep_set(tree, path, seed)
        try:   # train.trainer.seed + i may pass the seeds' range: refused before any stage runs
            out.append(PipelineConfig.model_validate(tree))
        except ValidationError as e:
            raise ConfigError(f"--seeds {seeds}: {format_validation(e)}") from e
    return out


def train_configs(cfg: PipelineConfig, *, seeds: int, backbones: list[str], variants: list[str],
                  reseed_chain: bool = False) -> list[PipelineConfig]:
    out = []
    for backbone in backbones:
        for variant in variants:
            for seeded in seed_configs(cfg, seeds, reseed_chain):
                tree = seeded.model_dump(mode="json")
                deep_set(tree, ["train", "variant"], variant)
                fusion = (cfg.train.fusion, cfg.train.source) if variant == "tslrec" else ("gate", "enhanced")
                deep_set(tree, ["train", "fusion"], fusion[0])   # the fusion belongs to tslrec runs only
                deep_set(tree, ["train", "source"], fusion[1])
                deep_set(tree, ["train", "backbone", "name"], backbone)
                out.append(PipelineConfig.model_validate(tree))
    return out


def is_pretrain_twin(cfg: PipelineConfig) -> bool:
    """A base run with exactly pretrain's backbone and trainer config (seed included) trains the same
    model as `pretrain`: both build it through `stages.core.trainer.new_backbone` from the same seed
    with a plain item table (tests/cli/test_experiment.py checks the two give identical results)."""
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


def upstream_summary(upstream: dict[str, Any]) -> dict[str, Any]:
    return {s: {"key": rec.key, "result": rec.result, "wall_s": rec.wall_s, "cached": rec.cached} for s, rec in upstream.items()}


def run_all(runner: Any, cfg: PipelineConfig, *, seeds: int = 1, backbones: list[str] | None = None,
            variants: list[str] | None = None, reseed_chain: bool = False, jobs: int | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    backbones = backbones or [cfg.train.backbone.name]
    variants = variants or list(VARIANTS)
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    chains = seed_configs(cfg, seeds, True) if reseed_chain else [cfg]
    tcfgs = train_configs(cfg, seeds=seeds, backbones=backbones, variants=variants, reseed_chain=reseed_chain)
    needed = upstream_stages(tcfgs)
    total = len(needed) * len(chains) + len(tcfgs)
    upstreams, ranks, i = {}, {}, 0
    for c in chains:                                         # seed -> stage -> record
        upstreams[c.train.trainer.seed] = up = {}
        for s in needed:
            i += 1
            log(f"[bold]stage {i} of {total}[/bold]: {s}" + (f" seed {c.train.trainer.seed}" if reseed_chain else ""))
            took = up["pretrain"].wall_s if "pretrain" in up else 0.0   # a training of the same data: how long one takes
            if n := compute_data_parallel(runner, s, c, jobs, expected_s=took):
                ranks[s] = n                                 # computed by n rank processes (then a hit here)
            up[s] = runner.run(s, c)
    upstream = next(iter(upstreams.values()))
    pretrain = upstream.get("pretrain")                       # a training of the same data: how long one takes
    workers = compute_concurrently(runner, "train", [c for c in tcfgs if not is_pretrain_twin(c)], jobs,
                                   expected_s=pretrain.wall_s if pretrain is not None else 0.0)   # then hits below
    runs = []
    for i, tcfg in enumerate(tcfgs, i + 1):
        t = tcfg.train
        log(f"[bold]stage {i} of {total}[/bold]: train {t.variant} {t.backbone.name} seed {t.trainer.seed}")
        rec, r = train_run(runner, tcfg)
        runs.append({"backbone": r["backbone"], "variant": r["variant"], "seed": r["seed"], "key": rec.key, "stage": rec.stage,
                     "test": r["test"], "test_alt": r.get("test_alt"), "valid": r["valid"], "best_epoch": r["best_epoch"],
                     "epochs_run": r.get("epochs_run"), "seconds_per_epoch": r["seconds_per_epoch"], "cached": rec.cached, "wall_s": rec.wall_s})
    rows = summarize(runs)
    summary = {
        "dataset": cfg.data.dataset,
        "mask_history": cfg.train.trainer.mask_history,
        "seed_mode": "chain" if reseed_chain else "downstream",
        "upstream": upstream_summary(upstream),
        **({"upstream_by_seed": {str(s): upstream_summary(u) for s, u in upstreams.items()}} if reseed_chain else {}),
        "train_workers": workers,           # train runs computed at once in worker processes (0: one after another)
        "data_parallel": ranks,             # stage -> rank processes that trained it (pipeline/data_parallel.py)
        "runs": runs, "summary": rows, "significance": significance(rows), "significance_vs_each": versus_each(rows),
        # the settings that ran: 'auto' precisions as this device resolved them (the records say the same)
        "pipeline": resolve_precision(cfg, runner.rt).model_dump(mode="json"), "wall_s": round(time.perf_counter() - t0, 2),
    }
    summary["experiment"] = save_experiment(runner.rt.cache_dir, summary)
    print_table(summary)
    summary["table_tsv"] = table_tsv(summary)
    return summary


def versus_each(rows: list[dict[str, Any]], ours: str = "tslrec") -> list[dict[str, Any]]:
    """TSLRec against base and against ci separately, per backbone and metric (two-sample t-test;
    `significance` compares with the best of them only, as the paper's stars)."""
    by = {(r["backbone"], r["variant"]): r for r in rows}
    out = []
    for (backbone, variant), other in sorted(by.items()):
        mine = by.get((backbone, ours))
        if variant == ours or mine is None:
            continue
        out += [{"backbone": backbone, "metric": m, "vs": variant, "diff": mine["mean"][m] - other["mean"][m],
                 "p": ttest_p(mine["per_seed"][m], other["per_seed"][m])} for m in METRICS]
    return out


def save_experiment(cache_dir: Path, summary: dict[str, Any]) -> str:
    """Store the summary under experiments/<dataset>-<key>.json (atomic), keyed by its train runs."""
    key = cache_key({"dataset": summary["dataset"], "runs": sorted(r["key"] for r in summary["runs"]),
                     **({"seed_mode": "chain"} if summary.get("seed_mode") == "chain" else {})})[:16]
    path = Path(cache_dir) / "experiments" / f"{summary['dataset']}-{key}.json"
    body = json.dumps({k: v for k, v in summary.items() if k != "experiment"}, indent=1)
    write_atomically(path, lambda tmp: tmp.write_text(body))
    return str(path)


def print_table(summary: dict[str, Any]) -> None:
    mask = "history masked" if summary["mask_history"] else "no history masking"
    reseeded = "every stage re-seeded" if summary.get("seed_mode") == "chain" else "downstream seed only"
    table = Table("backbone", "variant", "seeds", *[m.upper().replace("HR", "HR@").replace("NDCG", "NDCG@") for m in METRICS],
                  "s/epoch", title=f"{summary['dataset']}: test metrics, mean ± std over seeds ({mask}; {reseeded})")
    for row in summary["summary"]:
        cells = [f"{row['mean'][m]:.4f}" + (f" ± {row['std'][m]:.4f}" if row["n_seeds"] > 1 else "") for m in METRICS]
        table.add_row(row["backbone"], row["variant"], str(row["n_seeds"]), *cells, f"{row['seconds_per_epoch']:.1f}")
    err.print(table)
    t = summary.get("pipeline", {}).get("train", {})
    if t.get("variant") == "tslrec" and (t.get("fusion"), t.get("source")) != ("gate", "enhanced"):
        log(f"the tslrec rows: train.fusion={t['fusion']}, train.source={t['source']} (the paper's: gate, enhanced)")
    for s in summary["significance"]:
        p = "n/a (needs >= 2 seeds)" if s["p"] is None else f"{s['p']:.3g}"
        log(f"{s['backbone']} tslrec vs {s['vs']} on {s['metric']}: diff {s['diff']:+.4f}, p = {p}")


def table_tsv(summary: dict[str, Any]) -> str:
    lines = ["\t".join(["backbone", "variant", "seeds", *METRICS])]
    for row in summary["summary"]:
        lines.append("\t".join([row["backbone"], row["variant"], str(row["n_seeds"]),
                                *[f"{row['mean'][m]:.4f}" for m in METRICS]]))
    return "\n".join(lines)
