"""Seconds per TSLRec SFT epoch (and augment pass) of one language model, from a few sampled steps.

The real stage code (`sft.train_step`: batch, forward with the shared-prefix reuse for decoders, head,
loss, backward, AdamW; augment's one-item prompts for inference) on --steps training batches spread
evenly over the epoch's length-sorted batch list, after --warmup untimed ones, extrapolated as mean step
seconds x steps per epoch (see benchmarks/efficiency.py, whose jobs this reuses). Meant for a model too slow for a
full epoch on the CPU, e.g. SmolLM2-135M (all 30 layers):

    python -m benchmarks.sft_epoch --dataset beauty --model smollm2-135m --steps 4 --threads 1

Writes benchmarks/results/sft-epoch-<model>-<dataset>.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import RESULTS, write_json
from benchmarks.efficiency import DATA, config, header, infer_job, interleaved, load, log, train_job
from schemas.runtime import Runtime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(DATA), default="beauty")
    ap.add_argument("--data-root", type=Path, default=Path("/work/shared/datasets"))
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--num-layers", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--infer-batch-size", type=int, default=256, help="augment's default batch")
    ap.add_argument("--max-items", type=int, default=50)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--infer-steps", type=int, default=2)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rt = Runtime(progress=False, offline=True, threads=args.threads)
    seqs, weight, groups = load(args.dataset, args.data_root, args.dim, args.k, args.seed)
    job, model = train_job(config("group", args), seqs, weight, groups, rt, args.steps)
    train = job.report(interleaved([job], args.warmup)[0])
    ijob = infer_job(model, "items", seqs, args.max_items, args.infer_batch_size, args.infer_steps)
    infer = ijob.report(interleaved([ijob], 1)[0])
    report = {**header(args, argv, "sft-epoch"), "model": args.model, "num_layers": args.num_layers,
              "threads": args.threads, "shared_prefix": model.shares_prefix, "train_epoch": train, "augment_pass": infer,
              "wall_seconds": round(time.perf_counter() - t0, 1),
              "note": "1 epoch = all users with training items (sft.valid_fraction=0 here; the stage's default holds out 5%)"}
    out = args.out or RESULTS / f"sft-epoch-{args.model}-{args.dataset}.json"
    write_json(out, report)
    log(f"{args.model}: {train['step_seconds_mean']:.1f} s/step x {train['steps_total']} steps = "
        f"{train['seconds_extrapolated'] / 3600:.2f} h per epoch; augment {infer['seconds_extrapolated'] / 60:.1f} min")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
