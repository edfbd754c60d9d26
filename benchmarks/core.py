"""Core LLM-stage benchmark on Beauty: group -> sft -> augment, with the SFT overhead made visible.

Measures
- group: k-means seconds, group sizes, mean entropy;
- sft: seconds per epoch and prompt tokens per second of the real stage code (`stages.sft.train`),
  validation MSE next to the mean-distribution baseline;
- overhead: on the first --raw-steps batches of that epoch (same users, same order, a fresh model
  with the same init), one full pipeline step (`sft.train_step`: batch building, forward, head,
  loss, backward, AdamW) is timed alternately with a raw step of the bare LoRA model (forward on
  precomputed inputs_embeds that require grad, as the trainable linear_proj makes them, backward
  of a scalar on h^u). ratio = pipeline / raw; the speed bar is <= 1.25;
- augment: seconds and C1/C2/C3 (paper, Fig. 4).
Writes benchmarks/results/core-beauty.json (command, commit, machine, versions, wall time) and
prints the same JSON on stdout; progress goes to stderr.

    python -m benchmarks.core --embeddings item_embeddings.safetensors --max-users 500 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from benchmarks.common import RESULTS, command, provenance, write_json  # noqa: E402
from pipeline.progress import make_tracker  # noqa: E402
from schemas.augment import AugmentConfig, AugmentIn  # noqa: E402
from schemas.data import DataConfig, DataIn  # noqa: E402
from schemas.group import GroupConfig, GroupIn  # noqa: E402
from schemas.runtime import Runtime  # noqa: E402
from schemas.sft import SftConfig  # noqa: E402
from stages import augment, data, group, sft  # noqa: E402
from stages.core.sequences import Sequences  # noqa: E402


def subset(seqs: Sequences, weight: torch.Tensor, max_users: int) -> tuple[Sequences, torch.Tensor]:
    """The first max_users users, their items renumbered 1..N' (embedding rows follow)."""
    m = min(max_users, seqs.n_users)
    offsets = seqs.offsets[:m + 1].clone()
    items = seqs.items[:int(offsets[-1])].long()
    used = torch.unique(items)                                   # sorted old ids
    remap = torch.zeros(seqs.n_items + 1, dtype=torch.long)
    remap[used] = torch.arange(1, used.numel() + 1)
    new_weight = torch.cat([weight[:1], weight[used]])
    return Sequences(remap[items].to(torch.int32), offsets, int(used.numel())), new_weight


def overhead(cfg: SftConfig, seqs: Sequences, weight: torch.Tensor, groups: dict, batches: list, rt: Runtime) -> dict:
    """Pipeline step vs raw forward+backward on the same batches, alternating, after one warm-up each."""
    task, items, tr, _, n_out = sft.prepare(cfg, seqs, weight, groups)
    model = sft.make_model(cfg, task, weight, n_out, rt).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.resolved().lr)
    targets = tr.targets
    raw_inputs = []
    with torch.no_grad():
        for idx in batches:
            ids, counts = sft.batch_inputs(items, tr, idx, cfg.max_items)
            b = model.template.build(model.linear_proj(model.item_weight[ids]), counts)
            raw_inputs.append((b.inputs_embeds.clone(), b.attention_mask, b.last_index))

    def raw(i: int) -> float:
        x, mask, last = raw_inputs[i]
        x = x.detach().requires_grad_(True)
        t0 = time.perf_counter()
        out = model.lm(inputs_embeds=x, attention_mask=mask, **model._lm_kwargs)
        states = out[0] if isinstance(out, tuple) else out.last_hidden_state
        states[torch.arange(states.shape[0]), last].sum().backward()
        dt = time.perf_counter() - t0
        for p in params:
            p.grad = None
        return dt

    def pipe(i: int) -> float:
        t0 = time.perf_counter()
        sft.train_step(model, task, opt, items, tr, targets, batches[i], cfg.max_items)
        return time.perf_counter() - t0

    raw(0), pipe(0)                                              # warm-up, not counted
    pipe_s, raw_s = [], []
    with rt.track("overhead", len(batches)) as bar:
        for i in range(len(batches)):
            if i % 2:
                raw_s.append(raw(i)); pipe_s.append(pipe(i))
            else:
                pipe_s.append(pipe(i)); raw_s.append(raw(i))
            bar.advance(1)
    tokens = sum(int(m.sum()) for _, m, _ in raw_inputs)
    return {"steps": len(batches), "pipeline_seconds": sum(pipe_s), "raw_seconds": sum(raw_s),
            "ratio": sum(pipe_s) / sum(raw_s), "median_step_ratio": statistics.median(p / r for p, r in zip(pipe_s, raw_s)),
            "pipeline_median_step_s": statistics.median(pipe_s), "raw_median_step_s": statistics.median(raw_s),
            "tokens": tokens, "padded_positions": sum(m.numel() for _, m, _ in raw_inputs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embeddings", required=True, type=Path, help="safetensors file with 'weight' [N+1, d] (from pretrain)")
    ap.add_argument("--data", type=Path, default=Path("/work/shared/datasets/beauty/Beauty.txt"), help="Beauty.txt (user item item ...)")
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--num-layers", type=int, default=None)
    ap.add_argument("--k", type=int, default=16, help="groups K")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-items", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--valid-fraction", type=float, default=0.05)
    ap.add_argument("--augment-batch-size", type=int, default=256)
    ap.add_argument("--max-users", type=int, default=None, help="first N users only (items renumbered)")
    ap.add_argument("--raw-steps", type=int, default=0, help="batches for the overhead measurement (0 = the whole first epoch)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 is faster on a shared 2-core box)")
    ap.add_argument("--cache-dir", type=Path, default=None, help="where converted models live (default: tslrec cache)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "core-beauty.json")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rt_kw = {"progress": not args.no_progress, "offline": True, "threads": args.threads}
    if args.cache_dir:
        rt_kw["cache_dir"] = args.cache_dir
    rt = Runtime(**rt_kw, tracker=make_tracker)
    t_start = time.perf_counter()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    seqs = Sequences.from_tensors(data.run(DataConfig(dataset="beauty"), DataIn(path=args.data), rt).artifacts["sequences"])
    weight = load_file(str(args.embeddings))["weight"].to(torch.float32)
    if weight.shape[0] != seqs.n_items + 1:
        raise SystemExit(f"{args.embeddings}: 'weight' has {weight.shape[0]} rows; {args.data} needs N+1 = {seqs.n_items + 1}")
    if args.max_users:
        seqs, weight = subset(seqs, weight, args.max_users)
    log(f"data: {seqs.n_users} users, {seqs.n_items} items, {int(seqs.items.numel())} interactions")

    t0 = time.perf_counter()
    g = group.run(GroupConfig(k=args.k, seed=args.seed), GroupIn(sequences=seqs.to_tensors(), item_embeddings={"weight": weight}), rt)
    group_s = time.perf_counter() - t0
    groups = g.artifacts["groups"]
    log(f"group: {group_s:.1f}s, sizes {g.result.group_sizes}")

    cfg = SftConfig(model=args.model, num_layers=args.num_layers, epochs=args.epochs, batch_size=args.batch_size,
                    max_items=args.max_items, lr=args.lr, seed=args.seed, valid_fraction=args.valid_fraction)
    model, sres, tlog = sft.train(cfg, seqs, weight, groups, rt)
    arts = sft.artifacts(model, cfg)
    del model
    log(f"sft: {sres.seconds_per_epoch:.1f}s/epoch, {sres.tokens_per_second:.0f} tok/s, valid MSE {sres.valid_mse} vs mean {sres.valid_mse_mean_baseline}")

    batches = tlog.batches[0][:args.raw_steps] if args.raw_steps else tlog.batches[0]
    ov = overhead(cfg, seqs, weight, groups, batches, rt)
    log(f"overhead: pipeline {ov['pipeline_seconds']:.1f}s vs raw fwd+bwd {ov['raw_seconds']:.1f}s over {ov['steps']} steps: ratio {ov['ratio']:.3f}")

    aug = augment.run(AugmentConfig(batch_size=args.augment_batch_size), AugmentIn(
        sequences=seqs.to_tensors(), item_embeddings={"weight": weight}, groups=groups,
        adapter=arts["adapter"], heads=arts["heads"]), rt)
    log(f"augment: {aug.result.seconds:.1f}s, C1 {aug.result.c1:.3f} C2 {aug.result.c2:.3f} C3 {aug.result.c3:.3f}")

    steps = len(tlog.batches[0])
    report = {
        "benchmark": "core-beauty",
        "command": command(argv),
        **provenance(threads=args.threads),
        "wall_seconds": time.perf_counter() - t_start,
        "data": {"file": str(args.data), "users": seqs.n_users, "items": seqs.n_items, "interactions": int(seqs.items.numel()),
                 "max_users": args.max_users},
        "embeddings": {"file": str(args.embeddings), "dim": int(weight.shape[1])},
        "group": {"seconds": group_s, **g.result.model_dump(mode="json")},
        "sft": {"config": cfg.model_dump(mode="json"), **sres.model_dump(mode="json"), "steps_per_epoch": steps,
                "seconds_per_step": sres.seconds_per_epoch / max(steps, 1), "epoch_seconds": tlog.epoch_seconds,
                "epoch_losses": tlog.epoch_losses},
        "overhead": ov,
        "augment": {"batch_size": args.augment_batch_size, **aug.result.model_dump(mode="json"),
                    "items_per_second": seqs.n_items / max(aug.result.seconds, 1e-9)},
    }
    write_json(args.out, report)
    print(json.dumps(report, indent=1))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
