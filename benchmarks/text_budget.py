"""The default text budget (`sft.item_text_tokens`), chosen on validation and cost, and the SFT epoch cost
of item text against none.

Runs the real `sft` stage (through the runner and its cache, the pipeline's defaults otherwise) on one
dataset with sft.item_text=title at each budget, and with item_text=none, one after the other in one
process, and records for each: the held-out users' validation MSE (Eq. 3) next to the mean-distribution
baseline, SFT seconds per epoch, prompt positions per user and per second. Test data plays no part.

    python -m benchmarks.text_budget --dataset beauty --budgets 16 8 32 --threads 2

Writes benchmarks/results/text-budget-<dataset>.json (command, commit, machine, versions).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import RESULTS, command, log_runtime, provenance, write_json
from pipeline.overrides import build_config
from pipeline.runner import Runner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--budgets", nargs="+", type=int, default=[16, 8, 32])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runner = Runner(log_runtime("cpu", args.threads, args.cache_dir))
    out = args.out or RESULTS / f"text-budget-{args.dataset}.json"
    record = {"command": command(), "dataset": args.dataset, "sets": args.sets,
              **provenance("cpu", args.threads), "bf16_native": bool(torch.cpu._is_avx512_bf16_supported()), "runs": []}
    settings = [("title", b) for b in args.budgets[:1]] + [("none", None)] + [("title", b) for b in args.budgets[1:]]
    for text, budget in settings:
        sets = [f"data.dataset={args.dataset}", f"sft.item_text={text}",
                *([f"sft.item_text_tokens={budget}"] if budget else []), *args.sets]
        t0 = time.perf_counter()
        rec = runner.run("sft", build_config(sets=sets))
        r = rec.result
        users = r["instances_per_epoch"]
        record["runs"].append({
            "item_text": text, "item_text_tokens": budget, "key": rec.key, "cached": bool(rec.cached),
            "valid_mse": r["valid_mse"], "valid_mse_mean_baseline": r["valid_mse_mean_baseline"],
            "seconds_per_epoch": r["seconds_per_epoch"], "tokens_per_second": r["tokens_per_second"],
            "positions_per_user": r["tokens_per_second"] * r["seconds_per_epoch"] / max(users, 1),
            "users_per_epoch": users, "wall_s": round(time.perf_counter() - t0, 1)})
        print(f"{time.strftime('%H:%M:%S')} item_text={text} tokens={budget}: valid MSE {r['valid_mse']:.5f} "
              f"(mean baseline {r['valid_mse_mean_baseline']:.5f}), {r['seconds_per_epoch']:.0f} s/epoch",
              file=sys.stderr, flush=True)
        write_json(out, record)
    print(out)


if __name__ == "__main__":
    main()
