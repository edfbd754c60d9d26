"""Sampled stage runs for benchmarks/scaling.py: a stage too long to run whole at a size is timed on a
fixed number of its steps and its wall time extrapolated to the whole stage.

    python -m benchmarks.scaling_sample --stage pretrain --steps 20 --cache-dir C --data-dir D -- STAGE.FIELD=VALUE ...

Runs in its own process (its peak RSS is the stage's): loads the stage's inputs from the cache, times
`--steps` training steps (and evaluation / inference batches) of the stage's own step code, and
extrapolates with the stage's step counts: seconds = load + step_s x steps_per_epoch + eval_s x items
(or users) evaluated. The partly trained model's artifacts are then stored under the stage's real key
in the benchmark's *private* cache (runner.run with the stage's `run` replaced), so the downstream
stages of the same size can run; their results (metrics) are meaningless and only the timings count.
Prints one JSON object: the extrapolated seconds, how they were derived, and the peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from pipeline.console import set_level  # noqa: E402
from pipeline.memory import track_peak  # noqa: E402
from pipeline.overrides import build_config  # noqa: E402
from pipeline.registry import STAGES  # noqa: E402
from pipeline.runner import Runner  # noqa: E402
from schemas.backbone import Metrics, TrainResult  # noqa: E402
from schemas.pretrain import PretrainOut  # noqa: E402
from schemas.runtime import Runtime  # noqa: E402
from schemas.train import TrainOut  # noqa: E402
from stages.core.evaluate import rank_users  # noqa: E402
from stages.core.sequences import Sequences  # noqa: E402

NO_METRICS = Metrics(hr5=0, hr10=0, ndcg5=0, ndcg10=0, n_users=0, mask_history=True)
SAMPLED = {"pretrain", "train", "sft", "augment"}   # the stages this module can time on a few steps


def first_users(seqs: Sequences, n: int) -> Sequences:
    """The first n users' sequences (a cheap view)."""
    n = min(n, seqs.n_users)
    return Sequences(items=seqs.items[:int(seqs.offsets[n])], offsets=seqs.offsets[:n + 1], n_items=seqs.n_items)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def sample_backbone(stage: str, steps: int, eval_batches: int, report: dict) -> Callable:
    """pretrain / train: the stage's own model (`model_for`), `steps` steps of the trainer's own
    `train_step` (precision, autocast and fusion as the stage runs them), and the 3 full-ranking passes
    of one epoch (valid, test, test under the other masking) timed on `eval_batches` batches of users."""
    from stages import pretrain as pretrain_stage, train as train_stage
    from stages.core import trainer
    from stages.core.distributed import parallel
    from stages.core.precision import resolve

    def run(cfg, inp, rt):
        t_start = time.perf_counter()
        seqs = Sequences.from_tensors(inp.sequences)
        if stage == "train" and cfg.variant == "tslrec" and cfg.fusion == "ensemble":
            raise SystemExit("error: no sampled measurement for the ensemble fusion (two models; run it whole)")
        model = (pretrain_stage.model_for(cfg, seqs) if stage == "pretrain" else train_stage.model_for(cfg, inp, seqs))
        device = torch.device(rt.device)
        model.to(device)
        train = seqs.train_part()
        data = trainer.Chunks.of(train, model.max_len, cfg.trainer.batch_size, device)
        all_steps = data.batches(cfg.trainer.batch_size, torch.Generator().manual_seed(cfg.trainer.seed))
        opt, ranks = trainer.optimizer(model, cfg.trainer), parallel(rt)
        precision = resolve(cfg.trainer.precision, rt.device)
        setup_s = time.perf_counter() - t_start
        model.train()
        t0 = time.perf_counter()
        for idx in all_steps[:steps]:
            trainer.train_step(model, opt, data, idx, precision, ranks)
        step_s = (time.perf_counter() - t0) / max(1, min(steps, len(all_steps)))
        sub = first_users(train, eval_batches * cfg.trainer.eval_batch_size)
        _, eval_s = timed(lambda: rank_users(model, sub, seqs.valid_targets()[:sub.n_users], max_len=model.max_len,
                                             batch_size=cfg.trainer.eval_batch_size, mask_history=True, device=device))
        per_user = eval_s / max(1, sub.n_users)
        report.update(setup_s=setup_s, step_s=step_s, steps_measured=min(steps, len(all_steps)), steps_total=len(all_steps),
                      eval_s_per_user=per_user, users=seqs.n_users,
                      seconds=setup_s + step_s * len(all_steps) + 3 * per_user * seqs.n_users)
        worst = torch.full((seqs.n_users,), seqs.n_items - 1, dtype=torch.int64)
        result = TrainResult(backbone=cfg.backbone.name, variant=getattr(cfg, "variant", "pretrain"), seed=cfg.trainer.seed,
                             valid=NO_METRICS, test=NO_METRICS, best_epoch=1, epochs_run=1,
                             seconds_per_epoch=step_s * len(all_steps), seconds_per_eval=per_user * seqs.n_users,
                             train_seconds=report["seconds"])
        arts = {"backbone": trainer.state_tensors(model), "ranks": {"valid": worst, "test": worst.clone()}}
        if stage == "pretrain":
            weight = model.embedding.all().detach().float().cpu().contiguous().clone()
            weight[0].zero_()
            return PretrainOut(result=result, artifacts={"item_embeddings": {"weight": weight}, **arts})
        return TrainOut(result=result, artifacts=arts)

    return run


def sample_sft(steps: int, eval_batches: int, report: dict) -> Callable:
    """sft ('group'): model loading, `steps` calls of stages.sft.train_step, and the held-out users'
    predictions timed on `eval_batches` batches of them."""
    from schemas.sft import SftOut, SftResult
    from stages import sft
    from stages.core.sequences import length_batches

    def run(cfg, inp, rt):
        cfg = cfg.resolved()                      # the task's defaults (lr, LoRA rank, ...) filled in
        seqs = Sequences.from_tensors(inp.sequences)
        weight = inp.item_embeddings["weight"].float()
        (task, items, tr, va, n_out), prep_s = timed(lambda: sft.prepare(cfg, seqs, weight, inp.groups))
        model, load_s = timed(lambda: sft.make_model(cfg, task, weight, n_out, rt))
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr)
        lengths = (tr.ends - tr.starts).clamp(max=cfg.max_items)
        all_steps = length_batches(lengths, cfg.batch_size, torch.Generator().manual_seed(cfg.seed + 1))
        targets = tr.targets.to(rt.device)
        model.train()
        t0 = time.perf_counter()
        for idx in all_steps[:steps]:
            sft.train_step(model, task, opt, items, tr, targets, idx, cfg.max_items)
        step_s = (time.perf_counter() - t0) / max(1, min(steps, len(all_steps)))
        n_eval = min(len(va), eval_batches * (cfg.eval_batch_size or cfg.batch_size))
        sub = va.subset(torch.arange(n_eval))
        _, eval_s = timed(lambda: sft.predict(model, task, items, sub, cfg.max_items, cfg.eval_batch_size or cfg.batch_size))
        per_inst = eval_s / max(1, n_eval)
        seconds = prep_s + load_s + step_s * len(all_steps) + per_inst * len(va)
        report.update(setup_s=prep_s + load_s, step_s=step_s, steps_measured=min(steps, len(all_steps)),
                      steps_total=len(all_steps), eval_s_per_user=per_inst, users=len(va), seconds=seconds)
        result = SftResult(model=cfg.model, hidden_size=int(model.lm.config.hidden_size), trainable_params=sum(p.numel() for p in params),
                           train_loss=0.0, valid_mse=None, valid_mse_mean_baseline=None, seconds_per_epoch=step_s * len(all_steps),
                           tokens_per_second=0.0, instances_per_epoch=len(tr), shared_prefix=model.shares_prefix)
        return SftOut(result=result, artifacts=sft.artifacts(model, cfg))

    return run


def sample_augment(steps: int, report: dict) -> Callable:
    """augment: loading the adapted model, and `steps` batches of items; the other rows stay zero."""
    from schemas.augment import AugmentOut, AugmentResult
    from stages.augment import embed_items
    from stages.lm.model import build_prompt_lm, load_adapted_lm, load_heads

    def run(cfg, inp, rt):
        t_start = time.perf_counter()
        weight = inp.item_embeddings["weight"].float()
        n = weight.shape[0] - 1
        lm, tok, _ = load_adapted_lm(inp.adapter, merge=True, cache_dir=rt.cache_dir, offline=rt.offline, device=rt.device)
        proj, head, name = load_heads(inp.heads)
        model = build_prompt_lm(lm, tok, weight, head.out_features, head, name, linear_proj=proj).to(rt.device).eval()
        setup_s = time.perf_counter() - t_start
        some = torch.arange(1, min(n, steps * cfg.batch_size) + 1)
        (emb, probs), s = timed(lambda: embed_items(model, some, cfg.batch_size, rt))
        per_item = s / max(1, some.numel())
        report.update(setup_s=setup_s, step_s=per_item * cfg.batch_size, steps_measured=-(-some.numel() // cfg.batch_size),
                      steps_total=-(-n // cfg.batch_size), eval_s_per_user=0.0, users=0, seconds=setup_s + per_item * n)
        full_emb = torch.zeros(n + 1, emb.shape[1])
        full_probs = torch.zeros(n + 1, probs.shape[1])
        full_emb[some], full_probs[some] = emb, probs
        result = AugmentResult(hidden_size=emb.shape[1], c1=0.0, c2=0.0, c3=0.0, seconds=report["seconds"])
        return AugmentOut(result=result, artifacts={"enhanced": {"embeddings": full_emb, "category_probs": full_probs}})

    return run


def sampler(stage: str, steps: int, eval_batches: int, report: dict) -> Callable:
    if stage in ("pretrain", "train"):
        return sample_backbone(stage, steps, eval_batches, report)
    if stage == "sft":
        return sample_sft(steps, eval_batches, report)
    if stage == "augment":
        return sample_augment(steps, report)
    raise SystemExit(f"error: no sampled measurement for stage {stage!r} (run it whole)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", required=True)
    ap.add_argument("--steps", type=int, default=20, help="training steps / inference batches timed")
    ap.add_argument("--eval-batches", type=int, default=2, help="evaluation / prediction batches timed")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--cache-dir", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("sets", nargs="*", help="stage.field=value overrides, as the CLI's --set")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    set_level("quiet")
    rt = Runtime(device=args.device, threads=args.threads, progress=False, cache_dir=args.cache_dir,
                 data_dir=args.data_dir, offline=True, log_level="quiet")
    cfg = build_config(sets=[f"data.dataset={args.dataset}", *args.sets])
    report: dict = {"stage": args.stage, "extrapolated": True}
    module = STAGES[args.stage].load()
    module.run = sampler(args.stage, args.steps, args.eval_batches, report)       # the runner then keys and stores as usual
    with track_peak(args.device) as peak:
        Runner(rt, compute_upstream=False, force=True).run(args.stage, cfg)
    report.update(peak_rss_mb=peak.rss_mb, peak_cuda_mb=peak.cuda_mb)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
