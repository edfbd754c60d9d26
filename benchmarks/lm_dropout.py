"""Does TSLRec's SFT need the language model's own dropout? `sft.lm_dropout` 'model' (MiniLM: 0.1 on hidden
states and attention probabilities) against 0 (as the paper's Llama-2, which has none), judged on validation.

Why it matters: on the CPU those dropouts are much of the SFT's time. A profile of Beauty's title SFT
(8 tokens, one thread) spent 26% of it drawing Bernoulli masks (torch draws them one at a time there) and
more multiplying by them; and with attention dropout CPU SDPA has no fused kernel, so training attends
eagerly (stages/lm/model.py). Turning it off changes the method, so the default moves only on validation.

For each item-text setting, the tool's defaults plus one cell (SASRec, the cell that setting's grid chose):
  none  -> gate on enhanced-minilm (the paper's TSLRec, `run all`'s cell)
  title -> add on enhanced-minilm-title (docs/item-text.md: SASRec's validation-chosen text-enhanced cell)
and for each rate: the SFT (its held-out users' MSE, seconds, peak memory), then the cell on --seeds.
Every cell's validation and test NDCG@10; the choice compares validation only (t-test over seeds).

    python -m benchmarks.lm_dropout --dataset beauty --seeds 42 43 44 --threads 1 --out FILE

Resumes from --out (runs already there are kept). Writes benchmarks/results/lm-dropout-<dataset>.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS, command, log_runtime, provenance, write_json
from benchmarks.fusion import run_cell, source_sets
from pipeline.datasets import DatasetError
from pipeline.overrides import build_config
from pipeline.runner import Runner
from pipeline.stats import ttest_p

CELLS = {"none": ("sasrec", "gate", ""), "title": ("sasrec", "add", "-title")}   # (backbone, fusion, source suffix)


def cell(setting: str, lm: str) -> tuple[str, str, str]:
    backbone, fusion, suffix = CELLS[setting]
    return backbone, fusion, f"enhanced-{lm}{suffix}"


def config(dataset: str, setting: str, rate: str, seed: int, sets: list[str], lm: str = "minilm"):
    """The tool's defaults, the user's --set, then the cell and the rate (no grid defaults)."""
    backbone, fusion, source = cell(setting, lm)
    return build_config(sets=[*sets, f"data.dataset={dataset}", f"train.backbone.name={backbone}",
                              f"train.trainer.seed={seed}", "train.variant=tslrec", f"train.fusion={fusion}",
                              *source_sets(source), f"sft.lm_dropout={rate}"])


def sft_row(rec: Any) -> dict[str, Any]:
    r = rec.result
    return {"key": rec.key, "cached": bool(rec.cached), "wall_s": rec.wall_s, "peak_rss_mb": rec.peak_rss_mb,
            **{k: r[k] for k in ("valid_mse", "valid_mse_mean_baseline", "train_loss", "seconds_per_epoch",
                                 "tokens_per_second", "instances_per_epoch")}}


def mean_std(xs: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0}


def summarize(setting: str, rates: list[str], sft: dict[str, dict], runs: list[dict], lm: str = "minilm") -> dict[str, Any]:
    """One setting: the SFT per rate, the cell per rate (validation and test NDCG@10 over seeds), the p-values
    of the last rate against the first, and the choice on validation."""
    by_rate = {rate: sorted((r for r in runs if r["setting"] == setting and r["rate"] == rate), key=lambda r: r["seed"])
               for rate in rates}
    ndcg = {rate: {split: [r[split]["ndcg10"] for r in rs] for split in ("valid", "test")} for rate, rs in by_rate.items()}
    cells = {rate: {"seeds": [r["seed"] for r in rs], "n_seeds": len(rs), "valid_ndcg10": mean_std(ndcg[rate]["valid"]),
                    "test_ndcg10": mean_std(ndcg[rate]["test"]),
                    "seconds_per_epoch": statistics.median(r["seconds_per_epoch"] for r in rs)}
             for rate, rs in by_rate.items() if rs}
    out: dict[str, Any] = {"cell": dict(zip(("backbone", "fusion", "source"), cell(setting, lm))),
                           "sft": {k: v for k, v in sft.items() if k in rates}, "cells": cells}
    a, b = rates[0], rates[-1]
    if a in sft and b in sft:
        out["sft_seconds_ratio"] = sft[b]["seconds_per_epoch"] / sft[a]["seconds_per_epoch"]
    if a in cells and b in cells and cells[a]["seeds"] == cells[b]["seeds"]:
        out["p_valid"] = ttest_p(ndcg[b]["valid"], ndcg[a]["valid"])
        out["p_test"] = ttest_p(ndcg[b]["test"], ndcg[a]["test"])
        out["choice_on_valid"] = max((a, b), key=lambda rate: cells[rate]["valid_ndcg10"]["mean"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--settings", nargs="+", choices=sorted(CELLS), default=["title", "none"])
    ap.add_argument("--rates", nargs="+", default=["model", "0"], help="sft.lm_dropout values; the first is the reference")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    ap.add_argument("--lm", default="minilm", help="the LM of the cells' sources (enhanced-LM[-title])")
    ap.add_argument("--sft-only", action="store_true", help="the SFTs only (held-out MSE and cost), no cells")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from pydantic import ValidationError

    from schemas.sft import SftConfig
    for rate in args.rates:
        try:
            SftConfig(lm_dropout=rate)
        except ValidationError:
            ap.error(f"--rates: {rate!r} is not an sft.lm_dropout value ('model' or a rate in [0, 1))")
    try:
        run(args)
    except (ValueError, DatasetError) as e:          # a bad config or dataset: one line, exit 1
        sys.exit(f"error: {e}")


def run(args: argparse.Namespace) -> None:
    out = args.out or RESULTS / f"lm-dropout-{args.dataset}.json"
    if args.threads:
        torch.set_num_threads(args.threads)
    old = json.loads(out.read_text()) if out.exists() else {}
    sft = old.get("sft", {})
    runs = {(r["setting"], r["rate"], r["seed"]): r for r in old.get("runs", [])}
    meta = {"command": command(), "dataset": args.dataset, "sets": args.sets, "rates": args.rates, "lm": args.lm,
            **provenance(args.device, args.threads)}
    runner = Runner(log_runtime(args.device, args.threads, args.cache_dir))

    def save() -> None:
        body = {**meta, "sft": sft, "runs": list(runs.values())}
        body["settings"] = {s: summarize(s, args.rates, sft.get(s, {}), body["runs"], args.lm) for s in args.settings}
        write_json(out, body)

    for setting in args.settings:                          # the SFTs first: their MSE and cost come early
        for rate in args.rates:
            rec = runner.run("sft", config(args.dataset, setting, rate, args.seeds[0], args.sets, args.lm))
            sft.setdefault(setting, {})[rate] = sft_row(rec)
            print(f"{time.strftime('%H:%M:%S')} sft {setting} lm_dropout={rate}: valid MSE "
                  f"{rec.result['valid_mse']:.5f}, {rec.result['seconds_per_epoch']:.0f} s", file=sys.stderr, flush=True)
            save()
    for setting in [] if args.sft_only else args.settings:
        for seed in args.seeds:
            for rate in args.rates:
                if (setting, rate, seed) in runs:
                    continue
                r = run_cell(runner, cell(setting, args.lm), seed, config(args.dataset, setting, rate, seed, args.sets, args.lm))
                runs[(setting, rate, seed)] = {"setting": setting, "rate": rate, **r}
                print(f"{time.strftime('%H:%M:%S')} {setting} lm_dropout={rate} seed {seed}: valid NDCG@10 "
                      f"{r['valid']['ndcg10']:.4f} test {r['test']['ndcg10']:.4f}", file=sys.stderr, flush=True)
                save()
    save()


if __name__ == "__main__":
    main()
