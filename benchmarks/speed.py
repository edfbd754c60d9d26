"""Roofline benchmark: seconds, FLOPs and matmul utilization of training and evaluation, per backbone.

For SASRec, GRU4Rec, Caser and FMLP-Rec on one dataset: the real training step (`trainer.train_step`:
the loss, Adam) over one epoch of the real batches, and the real full-ranking evaluation (`evaluate.rank_users`)
of every user's validation target, each in every precision asked for, interleaved and repeated so that
medians and ratios come from one invocation on one (noisy, shared) machine. Next to them, this machine's
matmul throughput in float32 and bfloat16 at the loss's own shapes, measured in the same run.

FLOPs are counted analytically (multiply-add = 2 FLOPs), per position p of a batch padded to length L
(`flops_per_position` below), for d = dim, N = items, n layers:
    loss (every real position, forward + the two gradient matmuls):   3 * 2 d N
    SASRec   per layer: projections q, k, v, out 4 * 2 d^2, feed-forward 2 * 2 d^2, attention 2 * 2 L d
    GRU4Rec  per layer: 3 gates x (input + hidden) 2 * 3 * 2 d^2; dense 2 d^2 once
    Caser    vertical n_v W d * 2, horizontal n_h d W (W + 1), fc (n_v d + n_h W) d * 2
    FMLP-Rec per layer: rfft/irfft of size 2L on d channels ~ 3 * 5 (2L) log2(2L) d / L, FFN 2 * 2 * 4 d^2
Training counts the backbone 3x (forward + backward) on all padded positions and the loss on real
ones; evaluation counts the backbone once on padded positions and scoring 2 d N per user.
Utilization = achieved FLOP/s / the measured matmul peak of the precision the loss ran in.

    python -m benchmarks.speed --dataset beauty [--precisions fp32 bf16] [--run-all]
Writes benchmarks/results/speed-<dataset>.json; progress on stderr.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from benchmarks.common import RESULTS, command, provenance, write_json
from benchmarks.run_all_time import time_run_all
from pipeline.overrides import build_config
from pipeline.runner import Runner
from schemas.backbone import BackboneConfig, TrainerConfig
from schemas.names import BACKBONE_PRECISIONS, BACKBONES
from schemas.runtime import Runtime
from stages.backbones.caser import N_H, N_V, WINDOW
from stages.backbones.embedding import ItemEmbedding
from stages.core import trainer
from stages.core.distributed import Dist
from stages.core.evaluate import rank_users
from stages.core.precision import DTYPES, resolve
from stages.core.sequences import Sequences



def flops_per_position(name: str, d: int, L: int, layers: int) -> float:
    """Forward FLOPs of the backbone at one position of a batch padded to length L (docstring)."""
    if name == "sasrec":
        return layers * (4 * 2 * d * d + 2 * 2 * d * d + 2 * 2 * L * d)
    if name == "gru4rec":
        return layers * 2 * 3 * 2 * d * d + 2 * d * d
    if name == "caser":
        W = min(WINDOW, L)
        return N_V * W * d * 2 + N_H * d * W * (W + 1) + (N_V * d + N_H * W) * d * 2
    if name == "fmlprec":
        return layers * (3 * 5 * 2 * L * math.log2(2 * L) * d / L + 2 * 2 * 4 * d * d)
    raise ValueError(name)


def padded_width(batch: torch.Tensor) -> int:
    """Columns a batch keeps after dropping all-padding leading columns (as batch_loss does)."""
    nonpad = (batch != 0).any(0)
    return batch.shape[1] - int(nonpad.int().argmax())


def epoch_flops(name: str, cfg: BackboneConfig, chunks: torch.Tensor, steps: list, n_items: int) -> float:
    total = 0.0
    for idx in steps:
        b = chunks[idx]
        L = padded_width(b) - 1                                          # inputs = chunk[:-1]
        real = int(((b[:, :-1] != 0) & (b[:, 1:] != 0)).sum())
        total += 3 * flops_per_position(name, cfg.dim, L, cfg.layers) * b.shape[0] * L
        total += 3 * 2 * cfg.dim * n_items * real
    return total


def eval_flops(name: str, cfg: BackboneConfig, lengths: torch.Tensor, batch_size: int, n_items: int) -> float:
    total = 0.0
    for users in torch.sort(lengths.clamp(min=1, max=cfg.max_len), stable=True).indices.split(batch_size):
        L = int(lengths[users].clamp(min=1, max=cfg.max_len).max())
        total += flops_per_position(name, cfg.dim, L, cfg.layers) * users.numel() * L
    return total + 2 * cfg.dim * n_items * lengths.numel()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, R: int, N: int, d: int, device: torch.device, reps: int = 5) -> dict[str, float]:
    """GFLOP/s of the loss's three matmul shapes, median of `reps`: (R,d)x(d,N), (R,N)x(N,d), (N,R)x(R,d)."""
    h, w, p = (torch.randn(*shape, dtype=dtype, device=device) for shape in ((R, d), (N, d), (R, N)))
    shapes = {"logits": lambda: h @ w.T, "grad_h": lambda: p @ w, "grad_w": lambda: p.T @ h}
    out = {}
    for name, f in shapes.items():
        f()
        ts = []
        for _ in range(reps):
            sync(device)
            t = time.perf_counter()
            f()
            sync(device)
            ts.append(time.perf_counter() - t)
        out[name] = round(2 * R * N * d / statistics.median(ts) / 1e9, 1)
    out["peak"] = max(out.values())
    return out


def load(dataset: str) -> Sequences:
    """The dataset as the `data` stage gives it (through the runner, in a throwaway cache)."""
    with tempfile.TemporaryDirectory() as cache:
        runner = Runner(Runtime(progress=False, cache_dir=Path(cache)))
        record = runner.run("data", build_config(sets=[f"data.dataset={dataset}"]))
        return Sequences.from_tensors(runner.load(record, "sequences"))


class Bench:
    """One backbone in one precision: a model, its optimizer and a fixed list of epoch batches."""

    def __init__(self, name: str, precision: str, seqs, data: trainer.Chunks, steps, eval_batch: int,
                 device: torch.device):
        self.cfg, self.device = BackboneConfig(name=name), device
        self.model = trainer.new_backbone(self.cfg, 0, partial(ItemEmbedding, seqs.n_items, self.cfg.dim)).to(device)
        self.data = trainer.Chunks(data.chunks.to(device), data.lengths, data.per_batch)
        self.opt = trainer.optimizer(self.model, TrainerConfig())                   # Adam, lr 1e-3
        self.precision, self.seqs, self.steps, self.eval_batch = precision, seqs, steps, eval_batch

    def epoch(self) -> float:
        """One epoch of the product's training step (one process: `Dist()` changes nothing)."""
        self.model.train()
        sync(self.device)
        t = time.perf_counter()
        for idx in self.steps:
            trainer.train_step(self.model, self.opt, self.data, idx, self.precision, Dist())
        sync(self.device)
        return time.perf_counter() - t

    def evaluate(self) -> float:
        train = self.seqs.train_part()
        t = time.perf_counter()
        rank_users(self.model, train, self.seqs.valid_targets(), max_len=self.cfg.max_len,
                   batch_size=self.eval_batch, mask_history=True, device=self.device)
        sync(self.device)
        return time.perf_counter() - t


def run_all_seconds(dataset: str, threads: int, device: str, sets: list[str], cache_dir: Path | None) -> float:
    """`tslrec run all --dataset D` (defaults, plus `sets`), in a fresh (cold) cache, in a subprocess.
    `cache_dir` (must be empty) keeps its results for later runs; by default a temp folder."""
    return time_run_all(dataset, threads, device, sets, cache_dir)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--backbones", nargs="+", default=BACKBONES, choices=BACKBONES)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=list(BACKBONE_PRECISIONS))
    ap.add_argument("--eval-batches", nargs="+", type=int, default=[1024, 128], help="eval batch sizes to compare")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per backbone and precision (median)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--run-all", action="store_true", help="also time `tslrec run all` on this dataset (defaults, cold cache)")
    ap.add_argument("--run-all-set", action="append", default=[], help="a --set for that run (e.g. sft.model=PATH)")
    ap.add_argument("--run-all-cache", type=Path, default=None, help="an empty cache folder to time it in (kept)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    t_start = time.perf_counter()
    try:
        seqs = load(args.dataset)
    except ValueError as e:   # a bad dataset name or config: one line
        raise SystemExit(f"error: {e}") from None
    train = seqs.train_part()
    data = trainer.Chunks.of(train, 50, 256, torch.device("cpu"))       # the default max_len and batch size
    chunks, steps = data.chunks, data.batches(256, torch.Generator().manual_seed(0))
    R = int(((chunks[:, :-1] != 0) & (chunks[:, 1:] != 0)).sum()) // len(steps)      # mean loss rows per batch
    peaks = {p: matmul_peak(DTYPES[p], R, seqs.n_items, 64, device) for p in ("fp32", "bf16")}
    print(f"matmul GFLOP/s at R={R}, N={seqs.n_items}, d=64: {peaks}", file=sys.stderr)
    out = {"benchmark": f"speed-{args.dataset}", "command": command(), **provenance(args.device, args.threads),
           "dataset": args.dataset, "threads": args.threads,
           "users": seqs.n_users, "items": seqs.n_items, "steps_per_epoch": len(steps), "loss_rows_per_batch": R,
           "peak_gflops": {p: v["peak"] for p, v in peaks.items()}, "matmul_gflops": peaks, "backbones": {},
           "variants": {}}
    for name in args.backbones:
        benches = {p: Bench(name, p, seqs, data, steps, args.eval_batches[-1], device) for p in args.precisions}
        times = {p: {"epoch": [], "eval": {b: [] for b in args.eval_batches}} for p in args.precisions}
        for b in benches.values():                                     # untimed: allocator, kernels, caches
            b.epoch()
        for _ in range(args.epochs):                                   # interleaved: same noise for all
            for p, b in benches.items():
                times[p]["epoch"].append(b.epoch())
                for eb in args.eval_batches:
                    b.eval_batch = eb
                    times[p]["eval"][eb].append(b.evaluate())
        cfg = benches[args.precisions[0]].cfg
        f_epoch = epoch_flops(name, cfg, chunks, steps, seqs.n_items)
        f_eval = eval_flops(name, cfg, train.lengths, args.eval_batches[-1], seqs.n_items)
        for p in args.precisions:
            s_epoch = statistics.median(times[p]["epoch"])
            s_eval = {eb: statistics.median(v) for eb, v in times[p]["eval"].items()}
            row = {"seconds_per_epoch": round(s_epoch, 3), "seconds_per_eval": round(s_eval[args.eval_batches[-1]], 3),
                   "eval_batch_size": args.eval_batches[-1], "flops_per_epoch": f_epoch, "flops_per_eval": f_eval,
                   "gflops_per_s": round(f_epoch / s_epoch / 1e9, 1),
                   "utilization": round(f_epoch / s_epoch / 1e9 / peaks[p]["peak"], 3),
                   "eval_utilization": round(f_eval / s_eval[args.eval_batches[-1]] / 1e9 / peaks["fp32"]["peak"], 3),
                   "threads": args.threads, "dtype": p, "epochs_timed": times[p]["epoch"],
                   "seconds_per_eval_by_batch": {str(eb): round(v, 3) for eb, v in s_eval.items()}}
            out["variants"].setdefault(name, {})[p] = row
            print(f"{name:8s} {p}: {s_epoch:.2f} s/epoch, {row['gflops_per_s']} GFLOP/s ({row['utilization']:.0%}), "
                  f"eval {row['seconds_per_eval_by_batch']}", file=sys.stderr)
        auto = resolve("auto", args.device)    # the default's choice on this machine
        default = auto if auto in args.precisions else args.precisions[0]
        out["backbones"][name] = out["variants"][name][default]
        if len(args.precisions) > 1:
            out["variants"][name]["speedup_bf16_over_fp32"] = round(
                out["variants"][name]["fp32"]["seconds_per_epoch"] / out["variants"][name]["bf16"]["seconds_per_epoch"], 2)
    out["run_all_seconds"] = (run_all_seconds(args.dataset, args.threads, args.device, args.run_all_set, args.run_all_cache)
                              if args.run_all else "not measured")
    out["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(args.out or RESULTS / f"speed-{args.dataset}.json", out)
    print(json.dumps({k: out[k] for k in ("peak_gflops", "backbones", "run_all_seconds")}, indent=1))


if __name__ == "__main__":
    main()
