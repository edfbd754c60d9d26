"""Benchmark the four ID backbones (base variant) on one dataset over several seeds.

Every (backbone, seed) is a `pretrain` run through the runner and its cache (an interrupted benchmark
resumes: finished runs are cache hits), and benchmarks/results/backbones-<dataset>.json is rewritten
after every run, so a partial run leaves its finished figures. Meant for the background:

    nohup python -m benchmarks.backbones --dataset beauty --seeds 3 > backbones-beauty.log 2>&1 &
    python -m benchmarks.backbones --dataset beauty --from-cache ~/.cache/tslrec   # summarize, train nothing

One line per epoch goes to stderr (loss, validation NDCG@10).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS, command, log_runtime, provenance, write_json
from pipeline.overrides import ConfigError, build_config
from pipeline.runner import Runner
from pipeline.stats import METRICS
from schemas.names import BACKBONES


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    return {
        "seeds": [r["seed"] for r in runs],
        "test": {m: stats([r["test"][m] for r in runs]) for m in METRICS},
        "valid": {m: stats([r["valid"][m] for r in runs]) for m in METRICS},
        **({"test_alt": {"mask_history": runs[0]["test_alt"]["mask_history"],
                         **{m: stats([r["test_alt"][m] for r in runs]) for m in METRICS}}}
           if all(r.get("test_alt") for r in runs) else {}),
        "seconds_per_epoch": stats([r["seconds_per_epoch"] for r in runs]),
        "seconds_per_eval": stats([r["seconds_per_eval"] for r in runs]),
        "best_epoch": stats([r["best_epoch"] for r in runs]),
        "epochs_run": stats([r["epochs_run"] for r in runs]),
        "wall_seconds": stats([r["wall_seconds"] for r in runs]),
    }


def from_cache(dataset: str, cache_dir: Path, mask_history: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Base-variant backbone runs already in the tslrec cache (pretrain, or train with variant=base),
    one per (backbone, seed), for results computed through `tslrec run` under one evaluation
    protocol (runs of the other history-masking setting are skipped, never mixed)."""
    from pipeline.cache import Cache

    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for rec in Cache(cache_dir).runs():
        if rec.pipeline["data"]["dataset"] != dataset or rec.stage not in ("pretrain", "train"):
            continue
        if rec.stage == "train" and rec.config["variant"] != "base":
            continue
        if rec.result["test"]["mask_history"] != mask_history:
            continue
        r = rec.result
        runs.setdefault(r["backbone"], {}).setdefault(r["seed"], {**r, "stage": rec.stage, "key": rec.key,
                                                                  "wall_seconds": rec.wall_s})
    return {b: [by_seed[s] for s in sorted(by_seed)] for b, by_seed in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty", help="dataset name (see `tslrec data`)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="STAGE.FIELD=VALUE",
                    help="a config override as `tslrec --set` takes it, e.g. pretrain.trainer.lr=1e-4")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache-dir", type=Path, default=None, help="tslrec cache (default: TSLREC_CACHE_DIR or ~/.cache/tslrec)")
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results/backbones-<dataset>.json")
    ap.add_argument("--unmasked", action="store_true", help="with --from-cache: runs evaluated without history masking")
    ap.add_argument("--from-cache", type=Path, default=None, metavar="CACHE_DIR",
                    help="train nothing: summarize the base runs already in this tslrec cache")
    args = ap.parse_args()
    out_path = args.out or RESULTS / f"backbones-{args.dataset}.json"
    if args.from_cache:
        found = from_cache(args.dataset, args.from_cache, mask_history=not args.unmasked)
        write_json(out_path, {
            "command": command(), **provenance(),
            "source": f"tslrec cache {args.from_cache} (runs computed by `tslrec run`; their commit is in each run's code digest)",
            "backbones": {b: {"summary": summary(rs), "runs": rs} for b, rs in found.items()},
        }, indent=2)
        print(f"wrote {out_path}", file=sys.stderr)
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    runner = Runner(log_runtime(args.device, args.threads, args.cache_dir))
    try:   # every run's config first: a typo fails at once
        configs = {(b, seed): build_config(sets=[f"data.dataset={args.dataset}", *args.sets, f"pretrain.backbone.name={b}",
                                                 f"pretrain.trainer.seed={seed}"])
                   for b in args.backbones for seed in range(args.seeds)}
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    data = runner.run("data", next(iter(configs.values()))).result
    report: dict[str, Any] = {
        "command": command(), **provenance(args.device, args.threads),
        "dataset": {"name": args.dataset, "n_users": data["n_users"], "n_items": data["n_items"]},
        "sets": args.sets, "backbones": {},
    }
    for (backbone, seed), cfg in configs.items():
        rec = runner.run("pretrain", cfg)
        res = rec.result
        runs = [*report["backbones"].get(backbone, {}).get("runs", []),
                {**res, "stage": rec.stage, "key": rec.key, "cached": rec.cached, "wall_seconds": rec.wall_s}]
        print(f"{backbone} seed {seed}: test HR@10 {res['test']['hr10']:.4f} NDCG@10 {res['test']['ndcg10']:.4f} "
              f"best epoch {res['best_epoch']} ({res['seconds_per_epoch']:.1f} s/epoch)", file=sys.stderr, flush=True)
        report["backbones"][backbone] = {"config": cfg.pretrain.model_dump(mode="json"), "summary": summary(runs), "runs": runs}
        write_json(out_path, report, indent=2)   # after every run: a reader never sees a half-written file
    print(f"wrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
