"""LLM cost of TSLRec vs E4SRec (paper, section 5.3 / Fig. 3), and the decoder shared-prefix speed-up.

Efficiency (default): for one dataset and the same LLM, the real stage code of both methods:
- TSLRec = sft task="group": one instance per user (all users with training items, no hold-out);
  inference = augment's pass: every item once, alone in the prompt;
- E4SRec = sft task="next_item": one instance per training prefix; inference = every user once
  (test-time input: training part + validation item), scored by the item head over N+1 columns.
Training seconds per epoch: `sft.train_step` (batch building, forward, head, loss, backward, AdamW)
timed on --steps batches of the epoch's (length-bucketed) batch list, spread evenly over those
batches sorted by length, after --warmup untimed ones, then extrapolated: mean step seconds x steps
per epoch (a full E4SRec epoch does not fit on 2 cores). Inference: --infer-steps batches spread
evenly over the length-sorted batch list, mean x batches. Instance and token counts (real, non-padding prompt positions) are exact, for the full
epoch / pass. Item embeddings [N+1, 64] and the K=16 grouping are random (seeded): timing does not
depend on their values. Writes benchmarks/results/efficiency-<dataset>.json and .png.

Prefix reuse (--prefix-reuse): on a decoder (default smollm2-135m cut to 4 layers), TSLRec's
training step and item inference with `share_prefix` off and on, alternating on the same batches;
writes benchmarks/results/prefix-reuse.json.

    python -m benchmarks.efficiency --dataset beauty
    python -m benchmarks.efficiency --prefix-reuse --model smollm2-135m --num-layers 4
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from benchmarks.common import RESULTS, command, provenance, write_json  # noqa: E402
from schemas.data import DataConfig, DataIn  # noqa: E402
from schemas.runtime import Runtime  # noqa: E402
from schemas.sft import SftConfig  # noqa: E402
from stages import data, sft  # noqa: E402
from stages.core.preference import preference_histogram  # noqa: E402
from stages.core.sequences import Sequences, length_batches  # noqa: E402
from stages.lm.prompt import recent_items  # noqa: E402

DATA = {"beauty": "beauty/Beauty.txt", "ml-1m": "ml-1m/ml-1m.txt", "yelp": "yelp/Yelp.txt"}


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def load(dataset: str, root: Path, dim: int, k: int, seed: int) -> tuple[Sequences, torch.Tensor, dict]:
    """(sequences, random item embeddings [N+1, dim], random grouping's user_pref)."""
    rt = Runtime(progress=False, offline=True)
    seqs = Sequences.from_tensors(data.run(DataConfig(dataset=dataset), DataIn(path=root / DATA[dataset]), rt).artifacts["sequences"])
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(seqs.n_items + 1, dim, generator=g)
    weight[0] = 0
    cmap = torch.cat([torch.tensor([-1]), torch.randint(0, k, (seqs.n_items,), generator=g)])
    return seqs, weight, {"user_pref": preference_histogram(seqs.train_part(), cmap, k), "cluster_map": cmap}


@dataclass
class Job:
    """A sampled set of steps of one method/phase, to be timed and extrapolated to the full pass."""
    step: Callable[[torch.Tensor], None]
    batches: list[torch.Tensor]    # the sample (row indices of each step)
    total_steps: int               # steps in the full epoch / pass
    lengths: torch.Tensor          # (n,) item count of every instance of the full pass
    template: object               # PromptTemplate: prompt length from item count
    meta: dict
    inputs: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]   # batch -> (ids, counts)

    def report(self, seconds: list[float]) -> dict:
        total = int(self.template.lengths(self.lengths).sum())
        measured = int(self.template.lengths(self.lengths[torch.cat(self.batches)]).sum())
        mean = statistics.mean(seconds)
        return {**self.meta, "instances": int(self.lengths.numel()), "tokens": total,
                "mean_prompt_len": total / max(int(self.lengths.numel()), 1),
                "measured_steps": len(seconds), "steps_total": self.total_steps, "step_seconds_mean": mean,
                "step_seconds_median": statistics.median(seconds), "step_seconds": seconds,
                "seconds_extrapolated": mean * self.total_steps,
                "seconds_extrapolated_by_tokens": sum(seconds) / max(measured, 1) * total}


def interleaved(jobs: list[Job], warmup: int) -> list[list[float]]:
    """Step i of every job, then step i+1 with the job order reversed, ...: load drift on a shared
    machine hits all jobs alike. The first `warmup` batches of each job run once untimed first."""
    for job in jobs:
        for idx in job.batches[:warmup]:
            job.step(idx)
    out: list[list[float]] = [[] for _ in jobs]
    for i in range(max(len(j.batches) for j in jobs)):
        order = list(enumerate(jobs))[:: 1 if i % 2 == 0 else -1]
        for k, job in order:
            if i < len(job.batches):
                t0 = time.perf_counter()
                job.step(job.batches[i])
                out[k].append(time.perf_counter() - t0)
    return out


def spread(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n) (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [n // 2]


def stratified(batches: list[torch.Tensor], lengths: torch.Tensor, k: int) -> list[torch.Tensor]:
    """k batches spread evenly over the batches sorted by padded length: step cost follows prompt
    length, which varies a lot between length buckets, so a plain random pick is noisy."""
    by_len = sorted(batches, key=lambda idx: (int(lengths[idx].max()), idx.numel()))
    return [by_len[i] for i in spread(len(by_len), k)]


def train_job(cfg: SftConfig, seqs: Sequences, weight: torch.Tensor, groups: dict, rt: Runtime,
              steps: int, item_text: dict | None = None) -> tuple[Job, sft.PromptLM]:
    """sft.train_step (batch, forward, head, loss, backward, AdamW) on a sample of the epoch's batches
    (with sft.item_text: the items' text in the prompt, the instances fitted to the context as sft.train does)."""
    task, items, tr, _, n_out = sft.prepare(cfg, seqs, weight, groups)
    model = sft.make_model(cfg, task, weight, n_out, rt, item_text).train()
    tr = sft.fit_to_context(model, task, tr, items, groups, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.resolved().lr)
    lengths = (tr.ends - tr.starts).clamp(max=cfg.max_items)
    batches = length_batches(lengths, cfg.batch_size, torch.Generator().manual_seed(cfg.seed + 1))   # as sft.train

    def step(idx: torch.Tensor) -> None:
        model.train()
        sft.train_step(model, task, opt, items, tr, tr.targets, idx, cfg.max_items)

    meta = {"prefix_len": model.template.prefix_len, "batch_size": cfg.batch_size,
            "sampling": "batches spread evenly over the epoch's batches sorted by length"}
    inputs = partial(sft.batch_inputs, items, tr, max_items=cfg.max_items)
    return Job(step, stratified(batches, lengths, steps), len(batches), lengths, model.template, meta, inputs), model


def infer_job(model: sft.PromptLM, kind: str, seqs: Sequences, max_items: int, batch_size: int, steps: int,
              share_prefix: bool | None = None) -> Job:
    """kind 'items': every item alone in the prompt (TSLRec/augment); 'users': every user's test input (E4SRec)."""
    if kind == "items":
        items = torch.arange(1, seqs.n_items + 1, dtype=torch.int32)
        starts = torch.arange(seqs.n_items)
        ends = starts + 1
    else:
        inp = seqs.prefix(1)                                   # training part + validation item
        items, starts, ends = inp.items, inp.offsets[:-1], inp.offsets[1:]
    lengths = (ends - starts).clamp(max=max_items)
    batches = length_batches(lengths, batch_size)              # sorted by length, as at inference

    def inputs(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return recent_items(items, starts[idx], ends[idx], max_items)

    @torch.inference_mode()
    def step(idx: torch.Tensor) -> None:
        model.eval()
        if share_prefix is not None:
            model.share_prefix = share_prefix
        h, _ = model.hidden(*inputs(idx))
        model.head(h)                                          # group probabilities / item scores

    meta = {"batch_size": batch_size, "sampling": "batches spread evenly over the length-sorted list"}
    return Job(step, stratified(batches, lengths, steps), len(batches), lengths, model.template, meta, inputs)


def config(task: str, args: argparse.Namespace, share_prefix: bool = True) -> SftConfig:
    return SftConfig(model=args.model, num_layers=args.num_layers, task=task, batch_size=args.batch_size,
                     max_items=args.max_items, valid_fraction=0.0, seed=args.seed, share_prefix=share_prefix)


def header(args: argparse.Namespace, argv: list[str] | None, name: str) -> dict:
    return {"benchmark": name, "command": command(argv), **provenance(threads=args.threads)}


def efficiency(args: argparse.Namespace, argv: list[str] | None) -> dict:
    t_start = time.perf_counter()
    rt = Runtime(progress=False, offline=True, threads=args.threads)
    seqs, weight, groups = load(args.dataset, args.data_root, args.dim, args.k, args.seed)
    log(f"{args.dataset}: {seqs.n_users} users, {seqs.n_items} items, {int(seqs.items.numel())} interactions")
    methods = {"tslrec": ("group", "items"), "e4srec": ("next_item", "users")}
    jobs, models = {}, {}
    for m, (task, _) in methods.items():
        jobs[m], models[m] = train_job(config(task, args), seqs, weight, groups, rt, args.steps)
    train = {m: jobs[m].report(secs) for m, secs in zip(jobs, interleaved(list(jobs.values()), args.warmup))}
    ijobs = {m: infer_job(models[m], kind, seqs, args.max_items, args.infer_batch_size, args.infer_steps)
             for m, (_, kind) in methods.items()}
    infer = {m: ijobs[m].report(secs) for m, secs in zip(ijobs, interleaved(list(ijobs.values()), 1))}
    out = {m: {"task": methods[m][0], "shared_prefix": models[m].shares_prefix, "train_epoch": train[m],
               "inference": infer[m]} for m in methods}
    for m in methods:
        log(f"{m}: train {train[m]['instances']} instances, {train[m]['step_seconds_mean']:.2f}s/step x "
            f"{train[m]['steps_total']} = {train[m]['seconds_extrapolated']:.0f}s/epoch; "
            f"inference {infer[m]['instances']} prompts, {infer[m]['seconds_extrapolated']:.0f}s")
    t, e = out["tslrec"], out["e4srec"]
    ratios = {"train_epoch_seconds": e["train_epoch"]["seconds_extrapolated"] / t["train_epoch"]["seconds_extrapolated"],
              "train_epoch_seconds_by_tokens": (e["train_epoch"]["seconds_extrapolated_by_tokens"]
                                                / t["train_epoch"]["seconds_extrapolated_by_tokens"]),
              "train_instances": e["train_epoch"]["instances"] / t["train_epoch"]["instances"],
              "train_tokens": e["train_epoch"]["tokens"] / t["train_epoch"]["tokens"],
              "inference_seconds": e["inference"]["seconds_extrapolated"] / t["inference"]["seconds_extrapolated"],
              "inference_tokens": e["inference"]["tokens"] / t["inference"]["tokens"]}
    log(f"E4SRec / TSLRec: train epoch {ratios['train_epoch_seconds']:.1f}x, instances {ratios['train_instances']:.1f}x, "
        f"tokens {ratios['train_tokens']:.1f}x, inference {ratios['inference_seconds']:.1f}x")
    return {**header(args, argv, f"efficiency-{args.dataset}"),
            "wall_seconds": time.perf_counter() - t_start,
            "data": {"dataset": args.dataset, "file": str(args.data_root / DATA[args.dataset]), "users": seqs.n_users,
                     "items": seqs.n_items, "interactions": int(seqs.items.numel())},
            "model": {"name": args.model, "num_layers": args.num_layers, "threads": torch.get_num_threads()},
            "method": ("LLM seconds = the sft/augment code path (LLM + LoRA + linear_proj + head); training: "
                       f"{args.steps} of the epoch's batches spread evenly over them sorted by length, after "
                       f"{args.warmup} untimed; inference: {args.infer_steps} batches spread over the length-sorted "
                       "list after 1 untimed; the two methods' steps interleaved. Seconds are EXTRAPOLATED to the "
                       "full epoch / pass (mean step x steps; a full E4SRec epoch does not fit on 2 cores); instances "
                       f"and tokens are exact. Item embeddings random [N+1, {args.dim}], grouping random "
                       f"(K={args.k}), seeded: timing only. TSLRec trains on all users with training items (sft's "
                       "default also holds out 5%); E4SRec on the n-1 training prefixes of each user."),
            "tslrec": t, "e4srec": e, "ratio_e4srec_over_tslrec": ratios}


def prefix_reuse(args: argparse.Namespace, argv: list[str] | None) -> dict:
    t_start = time.perf_counter()
    rt = Runtime(progress=False, offline=True, threads=args.threads)
    seqs, weight, groups = load(args.dataset, args.data_root, args.dim, args.k, args.seed)
    job, model = train_job(config("group", args), seqs, weight, groups, rt, args.steps)
    if not model.causal:
        raise SystemExit(f"{args.model} is an encoder: prefix reuse does not apply")

    def with_share(j: Job, share: bool) -> Job:
        def step(idx: torch.Tensor) -> None:
            model.share_prefix = share
            j.step(idx)
        return replace(j, step=step, meta={**j.meta, "share_prefix": share})

    # the same model, optimizer and batches; plain and shared steps interleaved
    train = [with_share(job, s).report(secs) for s, secs in
             zip((False, True), interleaved([with_share(job, False), with_share(job, True)], args.warmup))]
    ij = [infer_job(model, "items", seqs, args.max_items, args.infer_batch_size, args.infer_steps, share_prefix=s)
          for s in (False, True)]
    infer = [j.report(secs) for j, secs in zip(ij, interleaved(ij, 1))]
    with torch.no_grad():                                                  # same outputs, on one batch
        model.eval()
        idx = job.batches[-1]                                              # the longest sampled batch
        hs = []
        for share in (False, True):
            model.share_prefix = share
            hs.append(model.hidden(*job.inputs(idx))[0])
    p = model.template.prefix_len
    tokens = int(model.template.lengths(job.lengths).sum())
    res = {"train_step": {"plain": train[0], "shared": train[1],
                          "speedup": train[0]["step_seconds_mean"] / train[1]["step_seconds_mean"]},
           "item_inference": {"plain": infer[0], "shared": infer[1],
                              "speedup": infer[0]["step_seconds_mean"] / infer[1]["step_seconds_mean"]},
           "max_abs_diff_h": float((hs[0] - hs[1]).abs().max()), "h_abs_max": float(hs[0].abs().max()),
           "positions_run_per_epoch": {"plain": tokens, "shared": tokens - p * int(job.lengths.numel()) + p * job.total_steps}}
    log(f"prefix reuse: train step speed-up {res['train_step']['speedup']:.2f}x, item inference "
        f"{res['item_inference']['speedup']:.2f}x, max |h diff| {res['max_abs_diff_h']:.2e}")
    return {**header(args, argv, "prefix-reuse"), "wall_seconds": time.perf_counter() - t_start,
            "data": {"dataset": args.dataset, "users": seqs.n_users, "items": seqs.n_items},
            "model": {"name": args.model, "num_layers": args.num_layers, "threads": torch.get_num_threads(),
                      "prefix_len": p, "batch_size": args.batch_size},
            "method": (f"task=group training steps (sft.train_step) on {args.steps} batches spread over the epoch's "
                       f"batches sorted by length ({args.warmup} untimed first), plain and shared-prefix interleaved "
                       "on the same batches with the same model and optimizer; item inference (one item per prompt, "
                       f"batch {args.infer_batch_size}) on {args.infer_steps} batches each, interleaved."), **res}


def figure(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = [("train_epoch", "Training (1 epoch)"), ("inference", "Inference")]
    fig, ax = plt.subplots(figsize=(5.2, 3.8), dpi=150)
    width = 0.36
    for j, (method, label, color) in enumerate((("tslrec", "TSLRec", "#d95f02"), ("e4srec", "E4SRec", "#7570b3"))):
        vals = [report[method][p]["seconds_extrapolated"] for p, _ in phases]
        xs = [i + (j - 0.5) * width for i in range(len(phases))]
        bars = ax.bar(xs, vals, width, label=label, color=color)
        for b, v in zip(bars, vals):
            ax.annotate(f"{v:,.0f} s" if v >= 10 else f"{v:.1f} s", (b.get_x() + b.get_width() / 2, v),
                        ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xticks(range(len(phases)), [name for _, name in phases])
    ax.set_ylabel("LLM seconds (log scale)")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 4)
    r = report["ratio_e4srec_over_tslrec"]
    m = report["model"]
    ax.set_title(f"{report['data']['dataset']}: {m['name']}, {m['threads']} CPU thread\n"
                 f"E4SRec/TSLRec: train {r['train_epoch_seconds']:.1f}x, inference {r['inference_seconds']:.1f}x",
                 fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.text(0.01, 0.01, "extrapolated from sampled steps", fontsize=6, color="gray")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(report: dict, path: Path) -> None:
    write_json(path, report)
    log(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=sorted(DATA), default="beauty")
    ap.add_argument("--data-root", type=Path, default=Path("/work/shared/datasets"))
    ap.add_argument("--prefix-reuse", action="store_true", help="measure the decoder shared-prefix speed-up instead")
    ap.add_argument("--model", default=None, help="default: minilm-l6 (efficiency), smollm2-135m (prefix reuse)")
    ap.add_argument("--num-layers", type=int, default=None, help="default: all (efficiency), 4 (prefix reuse)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--infer-batch-size", type=int, default=128)
    ap.add_argument("--max-items", type=int, default=50)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    ap.add_argument("--infer-steps", type=int, default=8, help="timed inference batches")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.prefix_reuse:
        args.model = args.model or "smollm2-135m"
        args.num_layers = args.num_layers or 4
        write(prefix_reuse(args, argv), args.out_dir / "prefix-reuse.json")
        return 0
    args.model = args.model or "minilm-l6"
    report = efficiency(args, argv)
    write(report, args.out_dir / f"efficiency-{args.dataset}.json")
    figure(report, args.out_dir / f"efficiency-{args.dataset}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
