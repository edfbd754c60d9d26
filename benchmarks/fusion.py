"""Fusions x item-table sources x backbones x seeds, plus Base: does the language model add anything?

Every cell is a `train` run through the tslrec runner and its cache, so an interrupted benchmark resumes
where it stopped (finished runs are cache hits) and any subset can be run on its own:

    python -m benchmarks.fusion --dataset beauty --device cuda
    python -m benchmarks.fusion --dataset beauty --backbones sasrec --fusions gate add --sources pretrain --seeds 42

Sources: `enhanced-minilm` / `enhanced-smollm2` (the augment stage's enhanced embeddings with sft.model
minilm-l6 / smollm2-135m; `enhanced-NAME` sets sft.model=NAME), `pretrain` (the pretrain backbone's own
item table) and `random` (a fixed random table): the last two are the controls. With `ensemble` among the
fusions, its control (source `none`: base + base with another seed) is added. `--set stage.field=value`
applies to every cell. Output (merged with the runs already in it, one JSON list `cells`, written after
every run): benchmarks/results/fusion-<dataset>.json. Only validation metrics choose anything
(`choice_on_valid`); test metrics are reported, never used to select.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS, command, log_runtime, provenance, write_json
from pipeline.experiment import train_run
from pipeline.overrides import build_config
from pipeline.runner import Runner
from pipeline.stats import METRICS, mean_std, ttest_p
from schemas.names import CONTROL_SOURCES, FUSIONS, LM_SOURCES
from schemas.pipeline import PipelineConfig

BACKBONES = ["sasrec", "fmlprec"]                 # the strong backbones; any of schemas/names.py BACKBONES runs
LM_OF = {"minilm": "minilm-l6", "smollm2": "smollm2-135m"}
CONTROLS = list(CONTROL_SOURCES)
SOURCES = ["enhanced-minilm", "enhanced-smollm2", *CONTROLS]
SEEDS = [42, 43, 44]


TEXT_SELECTIONS = ("title", "all")


def source_sets(source: str) -> list[str]:
    """`--set` overrides that select a source label's item table: `enhanced-LM` (TSLRec's SFT of LM),
    `enhanced-LM-title` / `-all` (the same with sft.item_text), `text-LM` / `text-LM-all` (the LM's reading
    of the item text alone, no SFT), `pretrain`, `random`, `none`."""
    for kind in LM_SOURCES:
        if source.startswith(f"{kind}-"):
            lm, _, text = source.removeprefix(f"{kind}-").rpartition("-")
            if text not in TEXT_SELECTIONS:       # no selection suffix: the whole rest names the model
                lm, text = source.removeprefix(f"{kind}-"), ""
            lm = LM_OF.get(lm, lm)
            if kind == "text":
                return ["train.source=text", f"encode.model={lm}", f"encode.item_text={text or 'title'}"]
            return ["train.source=enhanced", f"sft.model={lm}", *([f"sft.item_text={text}"] if text else [])]
    if source in (*CONTROL_SOURCES, "none"):
        return [f"train.source={source}"]
    raise ValueError(f"unknown source {source!r}: use enhanced-minilm[-title|-all], text-minilm[-all], "
                     f"enhanced-smollm2, enhanced-MODEL, pretrain or random")


def cell_list(backbones: list[str], fusions: list[str], sources: list[str], base: bool) -> list[tuple[str, str, str | None]]:
    """(backbone, fusion, source) of every cell; Base is (backbone, 'base', None)."""
    cells = []
    for b in backbones:
        if base:
            cells.append((b, "base", None))
        for f in fusions:
            cells += [(b, f, s) for s in sources]
            if f == "ensemble":
                cells.append((b, f, "none"))        # the ensemble's control: base + base
    return cells


# The text grid's SFT budget, fixed when it ran (the tool's default has been 8 since): a default under the
# user's --set, so another budget can be run (and recorded in the run file's `sets`).
GRID_TEXT_DEFAULTS = ["sft.item_text_tokens=16"]


def cell_config(dataset: str, cell: tuple[str, str, str | None], seed: int, sets: list[str]) -> PipelineConfig:
    """The pipeline config of one cell and seed: the grid's defaults, the user's --set, then what defines
    the cell (which the user cannot override)."""
    backbone, fusion, source = cell
    mine = [f"data.dataset={dataset}", f"train.backbone.name={backbone}", f"train.trainer.seed={seed}"]
    if fusion == "base":
        mine.append("train.variant=base")
    else:
        mine += ["train.variant=tslrec", f"train.fusion={fusion}", *source_sets(source)]
    return build_config(sets=[*GRID_TEXT_DEFAULTS, *sets, *mine])


def run_cell(runner: Runner, cell: tuple[str, str, str | None], seed: int, cfg: PipelineConfig) -> dict[str, Any]:
    backbone, fusion, source = cell
    t0 = time.perf_counter()
    rec, r = train_run(runner, cfg)
    return {"backbone": backbone, "fusion": fusion, "source": source, "seed": seed, "key": rec.key, "stage": rec.stage,
            "cached": bool(rec.cached), "wall_s": round(time.perf_counter() - t0, 1), "run_wall_s": rec.wall_s,
            "valid": {m: r["valid"][m] for m in METRICS}, "test": {m: r["test"][m] for m in METRICS},
            "test_alt": r.get("test_alt"), "best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
            "seconds_per_epoch": r["seconds_per_epoch"], "ensemble_weight": r.get("ensemble_weight")}


def summarize_cells(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (backbone, fusion, source): mean/std over seeds, t-tests against Base and against the
    same fusion with the pretrain source (test metrics; two-sample t-test over seeds)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        groups.setdefault((r["backbone"], r["fusion"], r["source"]), []).append(r)

    def per_seed(key: tuple, split: str, m: str) -> list[float]:
        return [r[split][m] for r in groups.get(key, [])]

    cells = []
    for key, rs in groups.items():
        backbone, fusion, source = key
        stats = {m: mean_std(per_seed(key, "test", m)) for m in METRICS}
        base = (backbone, "base", None)
        ctrl = (backbone, fusion, "pretrain")
        cells.append({
            "backbone": backbone, "fusion": fusion, "source": source, "n_seeds": len(rs), "seeds": [r["seed"] for r in rs],
            "mean": {m: stats[m][0] for m in METRICS}, "std": {m: stats[m][1] for m in METRICS},
            "valid_mean": {m: mean_std(per_seed(key, "valid", m))[0] for m in METRICS},
            "p_vs_base": None if fusion == "base" else
            {m: ttest_p(per_seed(key, "test", m), per_seed(base, "test", m)) for m in ("ndcg10", "hr10")},
            "p_vs_pretrain_source": None if fusion == "base" or source in ("pretrain", "none") else
            {"ndcg10": ttest_p(per_seed(key, "test", "ndcg10"), per_seed(ctrl, "test", "ndcg10"))},
            "ensemble_weights": [r["ensemble_weight"] for r in rs] if fusion == "ensemble" else None,
            "best_epochs": [r["best_epoch"] for r in rs],
        })
    return cells


def choice_on_valid(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Per backbone: the enhanced-source cell with the best mean VALIDATION NDCG@10, and whether it beats
    Base there. Test metrics play no part."""
    out = {}
    for backbone in sorted({c["backbone"] for c in cells}):
        mine = [c for c in cells if c["backbone"] == backbone]
        enhanced = [c for c in mine if (c["source"] or "").startswith("enhanced")]
        base = next((c for c in mine if c["fusion"] == "base"), None)
        if not enhanced:
            continue
        best = max(enhanced, key=lambda c: c["valid_mean"]["ndcg10"])
        out[backbone] = {"fusion": best["fusion"], "source": best["source"], "valid_ndcg10": best["valid_mean"]["ndcg10"],
                         "base_valid_ndcg10": base["valid_mean"]["ndcg10"] if base else None,
                         "beats_base_on_valid": bool(base and best["valid_mean"]["ndcg10"] > base["valid_mean"]["ndcg10"])}
    return out


def write(out: Path, runs: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    cells = summarize_cells(runs)
    write_json(out, {**meta, "cells": cells, "choice_on_valid": choice_on_valid(cells), "runs": runs})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--backbones", nargs="+", default=BACKBONES)
    ap.add_argument("--fusions", nargs="+", default=list(FUSIONS), choices=FUSIONS)
    ap.add_argument("--sources", nargs="+", default=SOURCES, help="enhanced-minilm, enhanced-smollm2, enhanced-MODEL, pretrain, random")
    ap.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    ap.add_argument("--no-base", action="store_true", help="skip the Base cells")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cache-dir", type=Path, default=None, help="tslrec cache (default: TSLREC_CACHE_DIR or ~/.cache/tslrec)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="stage.field=value, for every cell")
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results/fusion-<dataset>.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runner = Runner(log_runtime(args.device, args.threads, args.cache_dir))
    out = args.out or RESULTS / f"fusion-{args.dataset}.json"
    old = json.loads(out.read_text()).get("runs", []) if out.exists() else []
    runs = {(r["backbone"], r["fusion"], r["source"], r["seed"]): r for r in old}
    meta = {"command": command(), "dataset": args.dataset, "sets": args.sets, **provenance(args.device, args.threads)}
    try:   # every cell's config first: a typo fails at once, not hours into the run
        todo = [(cell, seed, cell_config(args.dataset, cell, seed, args.sets))
                for cell in cell_list(args.backbones, args.fusions, args.sources, not args.no_base) for seed in args.seeds]
    except ValueError as e:   # ConfigError included: a usage error
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    for cell, seed, cfg in todo:
        try:
            r = run_cell(runner, cell, seed, cfg)
        except (ValueError, RuntimeError, OSError) as e:   # what finished so far is in `out` already
            raise SystemExit(f"error: {'/'.join(str(c) for c in cell)} seed {seed}: {e}") from None
        runs[(*cell, seed)] = r
        print(f"{time.strftime('%H:%M:%S')} {'/'.join(str(c) for c in cell)} seed {seed}: valid NDCG@10 "
              f"{r['valid']['ndcg10']:.4f} test {r['test']['ndcg10']:.4f}{' (cached)' if r['cached'] else ''}",
              file=sys.stderr, flush=True)
        write(out, list(runs.values()), meta)
    print(out)


if __name__ == "__main__":
    main()
