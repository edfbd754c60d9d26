"""The `sft` stage: information reconstruction (paper, section 4.1), and the E4SRec baseline.

LoRA (peft) on the LLM, `linear_proj` (d -> H) and the task head (H -> K, or H -> N+1) trained in full.
task="group": each training user is one instance; the prompt holds the user's most recent
`max_items` *training* items (the sequences are cut with `train_part()` before anything else, so
validation and test items never reach the model); ĝ^u = softmax(W h^u + b) (Eq. 2) is fitted to
ḡ^u with Eq. 3's squared error summed over groups and averaged over the users of a batch (the sum
over users in Eq. 3 only rescales the learning rate).
A seeded `valid_fraction` of users is held out: their Eq. 3 error, averaged per user, is reported
next to the error of always predicting the mean training distribution.
task="next_item" (E4SRec, stages/lm/tasks.py): the same prompt machinery over every training
prefix of every user, an item head and cross-entropy; no user is held out: after training every
user is ranked once for validation and once for test (stages/lm/e4srec.py), metrics go to the
result and per-user ranks to a 'ranks' artifact.
Decoders run the shared instruction prefix once per batch (`share_prefix`, stages/lm/model.py).
Timing: `seconds_per_epoch` covers batch building, forward, backward and the optimizer step only
(validation excluded); `tokens_per_second` counts real (non-padding) prompt positions.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from schemas.runtime import Runtime
from schemas.sft import LM_OWN, SftConfig, SftIn, SftOut, SftResult
from stages.core import checkpoint
from stages.core.distributed import parallel
from stages.core.item_text import item_text_tokens
from stages.core.sequences import Sequences, length_batches
from stages.lm import e4srec
from stages.lm.dropout import FAST_EAGER, use_fast_dropout
from stages.lm.load import load_lm, prepare_for_training, quiet_transformers, set_dropout
from stages.lm.model import PromptLM, build_prompt_lm, pack_adapter
from stages.lm.precision import grad_scaler
from stages.lm.prompt import recent_items, window_counts
from stages.lm.schedule import lr_scheduler
from stages.lm.tasks import Instances, Task, get_task, window_targets

VERSION = 1
MODULES = ["stages.sft", "stages.core.evaluate", "stages.core.item_text", "stages.core.precision",
           "stages.core.preference", "stages.core.sequences", "stages.lm.load", "stages.lm.dropout", "stages.lm.precision",
           "stages.lm.prompt", "stages.lm.model", "stages.lm.tasks", "stages.lm.e4srec", "stages.lm.schedule"]


def identity(cfg: SftConfig, rt: Runtime) -> dict[str, str]:
    """Hashed into the run's key next to the config: what the model name stands for (its weights)."""
    from stages.lm.identity import model_identity

    return {"model": model_identity(cfg.model, rt.cache_dir, rt.offline)}


@dataclass
class TrainLog:
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    batches: list[list[torch.Tensor]] = field(default_factory=list)   # per epoch: instance indices of each step
    tokens: int = 0
    ranks: dict[str, torch.Tensor] | None = None                         # next_item: "valid", "test" (M,)


def split_instances(inst: Instances, valid_fraction: float, seed: int) -> tuple[Instances, Instances]:
    """Seeded split of the instances by user into (train, valid)."""
    users = torch.unique(inst.users)
    gen = torch.Generator().manual_seed(seed)
    perm = users[torch.randperm(users.numel(), generator=gen)]
    n_valid = int(round(valid_fraction * users.numel()))
    if valid_fraction > 0 and n_valid == 0 and users.numel() > 1:
        n_valid = 1
    is_valid = torch.zeros(int(inst.users.max()) + 1 if len(inst) else 0, dtype=torch.bool)
    is_valid[perm[:n_valid]] = True
    mask = is_valid[inst.users]
    return inst.subset(torch.nonzero(~mask).flatten()), inst.subset(torch.nonzero(mask).flatten())


def make_model(cfg: SftConfig, task: Task, item_weight: torch.Tensor, n_out: int, rt: Runtime,
               item_text: dict[str, torch.Tensor] | None = None) -> PromptLM:
    """Base LLM + LoRA + linear_proj + head, initialised from cfg.seed (deterministic); with sft.item_text,
    the items' text tokens too."""
    from peft import LoraConfig, get_peft_model

    cfg = cfg.resolved()
    lm, tok = load_lm(cfg.model, num_layers=cfg.num_layers, cache_dir=rt.cache_dir, offline=rt.offline,
                      precision=cfg.precision, load_in_4bit=cfg.load_in_4bit, device=rt.device)
    if cfg.lm_dropout != LM_OWN:
        set_dropout(lm, cfg.lm_dropout)
    lm = prepare_for_training(lm, gradient_checkpointing=cfg.gradient_checkpointing, quantized=cfg.load_in_4bit)
    targets = list(cfg.target_modules) if cfg.target_modules else task.lora_targets(lm)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none")
    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(cfg.seed)
        peft_lm = get_peft_model(lm, lora)
        head = task.build_head(lm.config.hidden_size, n_out, cfg.head_bias)
        model = build_prompt_lm(peft_lm, tok, item_weight, n_out, head, task.head_name,
                                instruction=task.instruction,
                                # the prefix's KV cache needs use_cache, which checkpointing turns off
                                share_prefix=cfg.share_prefix and not cfg.gradient_checkpointing)
    if torch.device(rt.device).type == "cpu":        # torch's CPU dropout draws its masks slowly, on one thread
        use_fast_dropout(model)                      # the LM's own dropouts and LoRA's
        model.eager_kernel = FAST_EAGER
    if cfg.item_text != "none":
        model.with_text(*item_text_tokens(cfg.item_text, cfg.item_text_tokens, tok, item_text, item_weight.shape[0]))
    return model.to(rt.device)


def fit_to_context(model: PromptLM, task: Task, inst: Instances, items: torch.Tensor, groups: dict[str, torch.Tensor],
                   cfg: SftConfig) -> Instances:
    """Instances whose prompts fit the model's context: each shows only its most recent whole items that fit
    (never an item cut in the middle), and a 'prompt' group target counts exactly those. Unchanged (the
    same tensors) when every prompt fits its last max_items items, as without item text."""
    budget = model.context(cfg.max_prompt_tokens)
    cost = model.item_cost()
    if int(cost.max()) > budget:
        raise ValueError(f"one item takes up to {int(cost.max())} prompt positions but only {budget} are left after the "
                         f"instruction; lower sft.item_text_tokens or raise sft.max_prompt_tokens")
    counts = window_counts(items, inst.starts, inst.ends, cost, cfg.max_items, budget)
    if bool((counts == (inst.ends - inst.starts).clamp(max=cfg.max_items)).all()):
        return inst
    starts = inst.ends - counts
    targets = inst.targets
    if task.name == "group" and cfg.target == "prompt":
        targets = window_targets(items, starts, inst.ends, groups["cluster_map"].long(), inst.targets.shape[1])
    return Instances(inst.users, starts, inst.ends, targets)


def shown_positions(model: PromptLM, items: torch.Tensor, inst: Instances, max_items: int) -> torch.Tensor:
    """(n,) prompt positions the items of each instance take (each item's text tokens + its embedding): the
    length batches are sorted by, so that a batch pads little. Without item text, the item count itself."""
    return positions_of(model, *recent_items(items, inst.starts, inst.ends, max_items))


def positions_of(model: PromptLM, ids: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(n,) prompt positions of the first counts[i] items of ids[i] (ids (n, L), counts (n,))."""
    shown = torch.arange(ids.shape[1]).unsqueeze(0) < counts.unsqueeze(1)                # (n, L)
    return (model.item_cost()[ids] * shown).sum(1)


def batch_inputs(items: torch.Tensor, inst: Instances, idx: torch.Tensor, max_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, L), counts (B,)) of the instances `idx`."""
    return recent_items(items, inst.starts[idx], inst.ends[idx], max_items)


def train_step(model: PromptLM, task: Task, opt: torch.optim.Optimizer, items: torch.Tensor, inst: Instances,
               targets: torch.Tensor, idx: torch.Tensor, max_items: int, dist: Any = None,
               scaler: torch.amp.GradScaler | None = None) -> tuple[float, int]:
    """One optimisation step on instances `idx`: (loss, real prompt positions of this rank).

    Under torchrun (`dist`, stages/core/distributed.py) this rank takes its slice of `idx`; its mean loss is
    weighted by its share of the batch, so the gradients summed over ranks are those of the global batch's mean loss."""
    local = dist.shard(idx) if dist is not None else idx
    opt.zero_grad(set_to_none=True)
    loss, tokens = None, 0
    if local.numel():
        ids, counts = batch_inputs(items, inst, local, max_items)
        h, batch = model.hidden(ids, counts)
        loss = task.loss(task.predict(model.head(h)), targets[local.to(targets.device)]) * (local.numel() / idx.numel())
        (scaler.scale(loss) if scaler is not None else loss).backward()
        tokens = batch.n_tokens   # the prompt's real positions, item text included
    value = float(dist.all_reduce_grads(model, loss)) if dist is not None else float(loss.detach())
    if scaler is not None:   # fp16: unscale, skip the step on inf/nan, adapt the scale
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    return value, tokens


@torch.no_grad()
def predict(model: PromptLM, task: Task, items: torch.Tensor, inst: Instances, max_items: int,
            batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(h (n, H), prediction (n, ...)) for every instance, in instance order; eval mode."""
    was_training = model.training
    model.eval()
    lengths = shown_positions(model, items, inst, max_items)
    hs, preds, order = [], [], []
    for idx in length_batches(lengths, batch_size):
        ids, counts = batch_inputs(items, inst, idx, max_items)
        h, _ = model.hidden(ids, counts)
        hs.append(h.cpu())
        preds.append(task.predict(model.head(h)).cpu())
        order.append(idx)
    model.train(was_training)
    if not order:
        return torch.zeros(0, model.lm.config.hidden_size), torch.zeros(0)
    inv = torch.argsort(torch.cat(order))
    return torch.cat(hs)[inv], torch.cat(preds)[inv]


def prepare(cfg: SftConfig, seqs: Sequences, item_weight: torch.Tensor, groups: dict[str, torch.Tensor]
            ) -> tuple[Task, torch.Tensor, Instances, Instances, int]:
    """(task, training-part CSR items, train instances, validation instances, head outputs)."""
    task, cfg = get_task(cfg.task), cfg.resolved()
    if item_weight.shape[0] != seqs.n_items + 1:
        raise ValueError(f"item embeddings have {item_weight.shape[0]} rows; expected N+1 = {seqs.n_items + 1}")
    train_seqs = seqs.train_part()          # the only view of the data from here on: no valid/test items
    inst = task.instances(train_seqs, groups, cfg)
    tr, va = split_instances(inst, cfg.valid_fraction if task.holdout_users else 0.0, cfg.seed)
    if len(tr) == 0:
        raise ValueError("no training instances for sft (every user is held out or has no training items)")
    return task, train_seqs.items, tr, va, task.n_out(train_seqs, groups)


def train(cfg: SftConfig, seqs: Sequences, item_weight: torch.Tensor, groups: dict[str, torch.Tensor],
          rt: Runtime, item_text: dict[str, torch.Tensor] | None = None) -> tuple[PromptLM, SftResult, TrainLog]:
    cfg = cfg.resolved()
    task, items, tr, va, n_out = prepare(cfg, seqs, item_weight, groups)
    model = make_model(cfg, task, item_weight, n_out, rt, item_text)
    tr, va = (fit_to_context(model, task, inst, items, groups, cfg) for inst in (tr, va))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    targets = tr.targets.to(torch.device(rt.device))
    lengths = shown_positions(model, items, tr, cfg.max_items)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    log = TrainLog()
    scaler = grad_scaler(cfg.precision, rt.device)
    n_steps = -(-len(tr) // cfg.batch_size)
    sched = lr_scheduler(opt, cfg.lr_schedule, cfg.warmup_steps, cfg.epochs * n_steps)
    with torch.random.fork_rng(devices=[]), rt.track("sft", cfg.epochs * n_steps) as bar:
        torch.manual_seed(cfg.seed)     # LoRA / model dropout
        model.train()
        done = 0
        if (resumed := checkpoint.restore(rt, "sft", model, opt, [gen])) is not None:   # after a crash
            done, (log.epoch_seconds, log.epoch_losses, log.batches, log.tokens, sched_state) = resumed
            sched.load_state_dict(sched_state)   # warmup/cosine go on from the step they stopped at, not step 0
            bar.advance(done * n_steps)
        for epoch in range(done + 1, cfg.epochs + 1):
            batches = length_batches(lengths, cfg.batch_size, gen)
            log.batches.append(batches)
            total, seen = 0.0, 0
            t0 = time.perf_counter()
            for idx in batches:
                value, tokens = train_step(model, task, opt, items, tr, targets, idx, cfg.max_items, dist=parallel(rt),
                                           scaler=scaler)
                sched.step()
                total += value * idx.numel()
                seen += idx.numel()
                log.tokens += tokens
                bar.advance(1, loss=total / seen)
            log.epoch_seconds.append(time.perf_counter() - t0)
            log.epoch_losses.append(total / max(seen, 1))
            checkpoint.save(rt, "sft", epoch, model, opt, [gen], (log.epoch_seconds, log.epoch_losses, log.batches,
                                                                  log.tokens, sched.state_dict()), trainable_only=True)
    model.eval()
    valid_mse = baseline = valid = test = test_alt = None
    eval_batch = cfg.eval_batch_size or cfg.batch_size
    if not task.holdout_users:      # next_item: rank every user's validation and test item
        valid, test, test_alt, log.ranks = e4srec.evaluate(model, seqs, max_items=cfg.max_items, batch_size=eval_batch,
                                                 mask_history=cfg.mask_history)
    if len(va):
        _, pred = predict(model, task, items, va, cfg.max_items, eval_batch)
        valid_mse = float(task.metric(pred, va.targets).mean())
        mean_pred = tr.targets.mean(0, keepdim=True).expand_as(va.targets)
        baseline = float(task.metric(mean_pred, va.targets).mean())
    result = SftResult(
        model=cfg.model,
        hidden_size=int(model.lm.config.hidden_size),
        trainable_params=sum(p.numel() for p in params),
        train_loss=log.epoch_losses[-1],
        valid_mse=valid_mse,
        valid_mse_mean_baseline=baseline,
        seconds_per_epoch=statistics.median(log.epoch_seconds),
        tokens_per_second=log.tokens / max(sum(log.epoch_seconds), 1e-9),
        instances_per_epoch=len(tr),
        settings=run_settings(cfg, model),
        shared_prefix=model.shares_prefix,
        valid=valid,
        test=test,
        test_alt=test_alt,
    )
    return model, result, log


def run_settings(cfg: SftConfig, model: PromptLM) -> dict:
    """The resolved task-dependent settings (what the record's None fields meant in this run)."""
    from stages.lm.model import peft_config_json

    out = {k: getattr(cfg, k) for k in ("lora_r", "lora_alpha", "lr", "lr_schedule", "warmup_steps", "epochs",
                                         "head_bias", "empty_prefix", "recent_targets", "target", "lm_dropout")}
    return {**out, "target_modules": sorted(peft_config_json(model.lm)["target_modules"])}


def artifacts(model: PromptLM, cfg: SftConfig, log: TrainLog | None = None) -> dict[str, dict[str, torch.Tensor]]:
    out = {"adapter": pack_adapter(model.lm, cfg.resolved().model_dump(mode="json")), "heads": model.heads_state()}
    if log is not None and log.ranks is not None:
        out["ranks"] = {k: v.contiguous() for k, v in log.ranks.items()}
    return out


def run(cfg: SftConfig, inp: SftIn, rt: Runtime) -> SftOut:
    seqs = Sequences.from_tensors(inp.sequences)
    model, result, log = train(cfg, seqs, inp.item_embeddings["weight"].to(torch.float32), inp.groups, rt, inp.item_text)
    return SftOut(result=result, artifacts=artifacts(model, cfg, log))
