"""What item text costs the SFT: seconds per Beauty SFT epoch with sft.item_text=title at several text
budgets against none, MiniLM, measured in one run.

The real stage code (`sft.make_model`, `sft.fit_to_context`, `sft.train_step`) on --steps training batches
spread evenly over the epoch's length-sorted batches, after --warmup untimed ones, the settings' steps
interleaved so that load drift hits them alike (benchmarks/efficiency.py's method), extrapolated as mean
step seconds x steps per epoch. Prompt positions per epoch are exact (prefix + each shown item's text
tokens and embedding + suffix). Item embeddings and groups are random and seeded: timing only.

    python -m benchmarks.text_cost --dataset beauty --budgets 8 16 32 --threads 2

Writes benchmarks/results/text-cost-<dataset>.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import RESULTS, write_json
from benchmarks.efficiency import DATA, header, interleaved, load, log, train_job
from schemas.runtime import Runtime
from schemas.sft import SftConfig
from stages.core.item_text import encode_item_text, read_items_tsv

ITEMS = {"beauty": "beauty/Beauty.items.tsv", "ml-1m": "ml-1m/ml-1m.items.tsv", "yelp": "yelp/Yelp.items.tsv"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(ITEMS), default="beauty")
    ap.add_argument("--data-root", type=Path, default=Path("/work/shared/datasets"))
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--budgets", nargs="+", type=int, default=[8, 16, 32])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rt = Runtime(progress=False, offline=True, threads=args.threads)
    seqs, weight, groups = load(args.dataset, args.data_root, 64, 16, 42)
    columns, texts = read_items_tsv(args.data_root / ITEMS[args.dataset], [str(i) for i in range(1, seqs.n_items + 1)])
    item_text = encode_item_text(columns, texts)
    settings = [("none", None)] + [("title", b) for b in args.budgets]
    jobs, models = [], []
    for text, budget in settings:
        cfg = SftConfig(model=args.model, item_text=text, valid_fraction=0.0, **({"item_text_tokens": budget} if budget else {}))
        job, model = train_job(cfg, seqs, weight, groups, rt, args.steps, item_text if budget else None)
        jobs.append(job)
        models.append(model)
    seconds = interleaved(jobs, args.warmup)
    rows = []
    for (text, budget), job, model, secs in zip(settings, jobs, models, seconds):
        rep = job.report(secs)
        shown = float(job.lengths.double().mean())
        rows.append({"item_text": text, "item_text_tokens": budget, "steps_total": rep["steps_total"],
                     "step_seconds_mean": rep["step_seconds_mean"], "step_seconds": secs,
                     "seconds_per_epoch_extrapolated": rep["seconds_extrapolated"], "mean_items_shown": shown})
        log(f"item_text={text} tokens={budget}: {rep['step_seconds_mean']:.2f} s/step x {rep['steps_total']} = "
            f"{rep['seconds_extrapolated']:.0f} s/epoch; {shown:.2f} items shown per user")
    none = rows[0]["seconds_per_epoch_extrapolated"]
    for r in rows:
        r["ratio_vs_none"] = r["seconds_per_epoch_extrapolated"] / none
    record = {**header(args, sys.argv[1:], f"text-cost-{args.dataset}"),
              "bf16_native": bool(torch.cpu._is_avx512_bf16_supported()), "threads": args.threads,
              "model": args.model, "dataset": args.dataset, "data_file": str(args.data_root / DATA[args.dataset]),
              "method": f"{args.steps} training batches spread over the length-sorted epoch after {args.warmup} untimed, "
                        "settings interleaved; seconds extrapolated (mean step x steps); random embeddings and groups",
              "rows": rows, "wall_seconds": round(time.perf_counter() - t0, 1)}
    out = args.out or RESULTS / f"text-cost-{args.dataset}.json"
    write_json(out, record)
    print(out)


if __name__ == "__main__":
    main()
