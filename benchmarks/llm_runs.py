"""Run the paper's LLM baselines that are tslrec stages, seed by seed, into one runs file per dataset.

    python -m benchmarks.llm_runs --dataset beauty --methods e4srec llamarec --seeds 42 43 44
    python -m benchmarks.llm_baselines --dataset beauty      # folds the runs file into llm-baselines-beauty.json

Methods (each through the runner and its cache, the pipeline's defaults otherwise):
  e4srec    `sft` with sft.task=next_item (E4SRec's published recipe is that task's default), seed = sft.seed
  llamarec  the `llamarec` stage (SASRec retriever, SmolLM2-135M reorders its top 20), seed = llamarec.seed
The upstream chain (data, pretrain) keeps its own seed, as in Table 2. `--set` passes overrides to every run:
a subsample of LlamaRec's training users is `--set llamarec.user_fraction=F`, recorded with the run.

Each run records valid, test and test_alt (the other history-masking setting), seconds per epoch, the stage's
wall seconds and peak memory (RSS; CUDA where it ran there). The file is rewritten after every run, and a rerun
resumes: finished runs are cache hits. Writes benchmarks/results/llm-runs-<dataset>.json unless --out.

Seeds run in parallel processes (one per core) each write their own file; `--merge A B ...` folds them into
--out (a later file's run of the same method and seed replaces an earlier one's), each run keeping the command,
commit and machine of the file it came from.
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
from pipeline.overrides import build_config
from pipeline.runner import Runner
from pipeline.stats import METRICS

METHODS = {  # method -> (stage, the overrides that make it, the seed field)
    "e4srec": ("sft", ["sft.task=next_item"], "sft.seed"),
    "llamarec": ("llamarec", [], "llamarec.seed"),
}


def runs_file(dataset: str) -> str:
    return f"llm-runs-{dataset}.json"


def run_one(runner: Runner, dataset: str, method: str, seed: int, sets: list[str]) -> dict[str, Any]:
    stage, mine, seed_field = METHODS[method]
    cfg = build_config(sets=[*sets, f"data.dataset={dataset}", *mine, f"{seed_field}={seed}"])
    rec = runner.run(stage, cfg)
    r = rec.result
    if r.get("test") is None:
        raise SystemExit(f"{method}: the {stage} run has no test metrics (is sft.task next_item?)")
    return {"method": method, "seed": seed, "stage": stage, "key": rec.key, "cached": bool(rec.cached),
            "sets": sets, "valid": {m: r["valid"][m] for m in METRICS}, "test": {m: r["test"][m] for m in METRICS},
            "test_alt": {m: r["test_alt"][m] for m in METRICS} if r.get("test_alt") else None,
            "seconds_per_epoch": r.get("seconds_per_epoch"), "train_seconds": rec.wall_s,
            "peak_rss_mb": rec.peak_rss_mb, "peak_cuda_mb": rec.peak_cuda_mb,
            "user_fraction": r.get("user_fraction")}        # LlamaRec's documented subsample of training users


def merge(files: list[Path], out: Path, dataset: str) -> dict[str, Any]:
    """One runs file from several: runs keyed by (method, seed), each tagged with its file's command, commit and
    machine; the merged file's commit and machine are theirs when they share one (the merging process's machine,
    its torch threads included, said nothing about the runs)."""
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    sources: list[str] = []                                     # a merged file passes on what it was merged from
    for f in files:
        d = json.loads(f.read_text())
        sources += [s for s in d.get("merged_from", [f.name]) if s not in sources]
        if d.get("dataset") != dataset:
            raise SystemExit(f"{f}: runs of dataset {d.get('dataset')!r}, not {dataset!r}")
        for r in d.get("runs", []):
            origin = {k: r.get(k, d.get(k)) for k in ("command", "commit", "machine")}
            runs[(r["method"], r["seed"])] = {**r, **origin}
    commits = sorted({r["commit"] for r in runs.values() if r.get("commit")})
    machines = {json.dumps({k: v for k, v in r["machine"].items() if k != "load_avg_1m"}, sort_keys=True)
                for r in runs.values() if r.get("machine")}                # the load differs from run to run
    record = {"command": command(), "dataset": dataset, **provenance(),
              **({"machine": json.loads(machines.pop())} if len(machines) == 1 else {}),
              "commit": commits[0] if len(commits) == 1 else None, "commits": commits,
              "merged_from": sources, "runs": sorted(runs.values(), key=lambda r: (r["method"], r["seed"]))}
    write_json(out, record)
    return record


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=["e4srec"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    ap.add_argument("--set", dest="sets", action="append", default=[], help="an override for every run (KEY=VALUE)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--deadline-s", type=float, default=None, help="start no run after this many seconds")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--merge", nargs="+", type=Path, default=None, metavar="FILE",
                    help="fold these runs files into --out instead of running anything")
    args = ap.parse_args(argv)
    if args.merge:
        merge(args.merge, args.out or RESULTS / runs_file(args.dataset), args.dataset)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or RESULTS / runs_file(args.dataset)
    old = json.loads(out.read_text()) if out.exists() else {}
    runs = {(r["method"], r["seed"]): r for r in old.get("runs", [])}
    meta = {"command": command(), "dataset": args.dataset, "sets": args.sets, **provenance(args.device, args.threads)}
    runner = Runner(log_runtime(args.device, args.threads, args.cache_dir))
    deadline = time.time() + args.deadline_s if args.deadline_s else None
    for method in args.methods:
        for seed in args.seeds:
            if deadline and time.time() > deadline:
                print(f"{time.strftime('%H:%M:%S')} deadline reached; stopping", file=sys.stderr)
                return
            r = run_one(runner, args.dataset, method, seed, args.sets)
            runs[(method, seed)] = r
            print(f"{time.strftime('%H:%M:%S')} {method} seed {seed}: test NDCG@10 {r['test']['ndcg10']:.4f}"
                  f"{' (cached)' if r['cached'] else ''}", file=sys.stderr, flush=True)
            write_json(out, {**meta, "runs": list(runs.values())})


if __name__ == "__main__":
    main()
