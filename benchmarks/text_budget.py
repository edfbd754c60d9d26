"""The default text budget (`sft.item_text_tokens`), chosen on validation and cost, and the SFT epoch cost
of item text against none.

Runs the real `sft` stage (through the runner and its cache, the pipeline's defaults otherwise) on one
dataset with sft.item_text=title at each budget, and with item_text=none, one after the other in one
process, and records for each: the held-out users' validation MSE (Eq. 3) next to the mean-distribution
baseline, SFT seconds per epoch, prompt positions per user and per second. Test data plays no part.

    python benchmarks/text_budget.py --dataset beauty --budgets 16 8 32 --threads 2

Writes benchmarks/results/text-budget-<dataset>.json (command, commit, machine, versions).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from backbones import LogRuntime  # noqa: E402
from fusion import environment  # noqa: E402
from pipeline.overrides import build_config  # noqa: E402
from pipeline.runner import Runner  # noqa: E402


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
    runner = Runner(LogRuntime(progress=False, threads=args.threads, **({"cache_dir": args.cache_dir} if args.cache_dir else {})))
    out = args.out or ROOT / "benchmarks" / "results" / f"text-budget-{args.dataset}.json"
    record = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "dataset": args.dataset, "sets": args.sets,
              **environment("cpu"), "bf16_native": bool(torch.cpu._is_avx512_bf16_supported()), "runs": []}
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
            # no tokens_per_second or positions: at this commit sft counts prompt positions without the item
            # text (fixed in main, c67d428); exact positions per budget are in text-cost-beauty.json
            "seconds_per_epoch": r["seconds_per_epoch"], "users_per_epoch": users, "wall_s": round(time.perf_counter() - t0, 1)})
        print(f"{time.strftime('%H:%M:%S')} item_text={text} tokens={budget}: valid MSE {r['valid_mse']:.5f} "
              f"(mean baseline {r['valid_mse_mean_baseline']:.5f}), {r['seconds_per_epoch']:.0f} s/epoch",
              file=sys.stderr, flush=True)
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(out)
    print(out)


if __name__ == "__main__":
    main()
