"""Shared training loop of `pretrain` and `train`: full-softmax cross-entropy, Adam, early stopping.

No leakage: the model is trained on `Sequences.train_part()` only (never a validation or test
item). Validation: input = training part, target = valid item. Test: input = training part +
valid item (`prefix(1)`), target = test item, with the best validation weights.

Training instances (all four backbones are causal, see stages/backbones/__init__.py): each
user's training sequence is cut, from its end, into chunks of max_len+1 items overlapping by
one (inputs = chunk[:-1], targets = chunk[1:]), with a loss at every position. On Beauty
(mean length 8.9) that is one chunk per user, as original SASRec. On long sequences (ML-1M,
mean 165) truncating to the last max_len+1 items would discard ~70% of the training positions;
chunks use every position once per epoch, each predicted from up to max_len previous items.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from statistics import median
from typing import Callable

import torch

from schemas.backbone import BackboneConfig, TrainerConfig, TrainResult
from schemas.runtime import Runtime
from stages.backbones import Backbone, build
from stages.backbones.embedding import ItemEmbedding
from stages.core import checkpoint
from stages.core.distributed import Dist, parallel
from stages.core.evaluate import metrics, rank_users
from stages.core.linear_ce import LinearCE
from stages.core.precision import DTYPES, resolve
from stages.core.sequences import Sequences, length_batches

CE_BLOCK_ELEMENTS = 1 << 21  # logits held at once by the loss: a block of rows small enough to stay in
                             # cache between the matmul and the softmax passes (8 MB fp32 / 4 MB bf16);
                             # 1.6-1.9x faster loss than 32M-element blocks on Beauty and ML-1M, 2 threads
BUCKET_POOL = 64              # batches per length-sorted pool (see `batches`)


@dataclass
class Fit:
    result: TrainResult
    model: Backbone
    ranks: dict[str, torch.Tensor]   # "valid", "test": (M,) int64


def training_chunks(train: Sequences, max_len: int) -> torch.Tensor:
    """(C, max_len+1) int64: every user's training items cut into left-padded chunks from the end."""
    lengths = train.lengths                                                      # (M,)
    n_chunks = ((lengths - 1).clamp(min=0) + max_len - 1) // max_len            # (M,) 0 if < 2 items
    owner = torch.repeat_interleave(torch.arange(train.n_users), n_chunks)      # (C,)
    k = torch.arange(owner.numel()) - torch.repeat_interleave(torch.cumsum(n_chunks, 0) - n_chunks, n_chunks)
    ends = train.offsets[owner + 1] - k * max_len                               # (C,) exclusive end
    idx = ends.unsqueeze(1) - (max_len + 1) + torch.arange(max_len + 1)         # (C, max_len+1)
    valid = idx >= train.offsets[owner].unsqueeze(1)
    out = torch.zeros(idx.shape, dtype=torch.int64)
    out[valid] = train.items[idx[valid]].long()
    return out


def batches(lengths: torch.Tensor, batch_size: int, gen: torch.Generator, pool: int = 64) -> list[torch.Tensor]:
    """Shuffled mini-batches of chunk indices, of similar lengths (see `length_batches`): a batch
    then spans few padding columns (it is cut to its longest chunk): on Beauty ~6x less backbone
    work than padding every batch to 50, while each batch is still a random draw from a random pool."""
    return length_batches(lengths, batch_size, gen, window=pool)


def batch_loss(model: Backbone, batch: torch.Tensor, denom: float | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Cross-entropy over all items summed over the non-padding positions of (B, max_len+1)
    chunks, divided by `denom` (default: their number, i.e. the mean)."""
    nonpad = (batch != 0).any(0)
    batch = batch[:, int(nonpad.int().argmax()):]            # drop all-padding leading columns (cheaper)
    inp, tgt = batch[:, :-1], batch[:, 1:]                   # (B, L) each
    mask = (inp != 0) & (tgt != 0)                           # (B, L) positions with an input and a target
    table = model.embedding.all()                            # (N+1, d), once per step
    h = model(inp, table)[mask]                              # (R, d): only real positions are scored
    # Padding is excluded by scoring against items 1..N only (= column 0 at -inf), targets shifted.
    denom = float(h.shape[0]) if denom is None else denom
    return LinearCE.apply(h.float(), table[1:].float(), tgt[mask] - 1, denom,
                          max(64, CE_BLOCK_ELEMENTS // table.shape[0]), dtype)


@dataclass
class Chunks:
    """An epoch's training material: every user's training part cut into chunks (see `training_chunks`)."""
    chunks: torch.Tensor     # (C, max_len+1) int64, on the training device
    lengths: torch.Tensor    # (C,) items per chunk, on the CPU (the batches are drawn there)
    per_batch: float         # the loss denominator: the mean number of scored positions per batch

    @classmethod
    def of(cls, train: Sequences, max_len: int, batch_size: int, device: torch.device) -> "Chunks":
        chunks = training_chunks(train, max_len).to(device)
        lengths = (chunks != 0).sum(1).cpu()
        # Losses are summed over a batch's positions and divided by the *mean* number of positions
        # per batch (not the batch's own): length-bucketed batches differ 20x in their number of
        # positions, and a per-batch mean would weigh a position of a short-sequence batch 20x more
        # than one of a long-sequence batch. A constant keeps every position's weight equal, as
        # with randomly drawn batches.
        n_batches = (chunks.shape[0] + batch_size - 1) // batch_size
        return cls(chunks, lengths, float((lengths - 1).clamp(min=0).sum()) / max(1, n_batches))

    def batches(self, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
        """One epoch's shuffled, length-bucketed batches of chunk indices."""
        return batches(self.lengths, batch_size, gen, BUCKET_POOL)


def optimizer(model: Backbone, cfg: TrainerConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_step(model: Backbone, opt: torch.optim.Optimizer, data: Chunks, idx: torch.Tensor, precision: str,
               ranks: Dist) -> torch.Tensor:
    """One optimisation step on the chunks `idx`: the step's loss, a 0-dim tensor (no host sync on CUDA).

    torchrun: this rank takes its slice of the global batch, and gradients and losses are summed over
    ranks (the global batch's); in one process `ranks` changes nothing. bf16 also autocasts the
    backbone: tensor cores on CUDA; on a CPU with AVX512-BF16 8-12% faster steps for all four backbones
    on Beauty (the loss, stages/core/linear_ce.py, is most of the rest)."""
    local = ranks.shard(idx)
    opt.zero_grad(set_to_none=True)
    loss = None
    if local.numel():
        device = data.chunks.device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = batch_loss(model, data.chunks[local.to(device)], data.per_batch, DTYPES[precision])
        loss.backward()
    total = ranks.all_reduce_grads(model, loss)
    opt.step()
    return total


def fit(model: Backbone, seqs: Sequences, cfg: TrainerConfig, rt: Runtime, *, variant: str,
        desc: str = "train") -> Fit:
    t_start = time.perf_counter()
    device = torch.device(rt.device)
    model.to(device)
    max_len = model.max_len
    train = seqs.train_part()
    data = Chunks.of(train, max_len, cfg.batch_size, device)
    valid_t, test_t = seqs.valid_targets(), seqs.test_targets()
    gen = torch.Generator().manual_seed(cfg.seed)
    ranks = parallel(rt)   # torchrun: this process's share of each step; the identity in one process
    opt = optimizer(model, cfg)
    precision = resolve(cfg.precision, rt.device)   # 'auto': bf16 where the device has it natively

    def evaluate(inputs: Sequences, targets: torch.Tensor, mask_history: bool = cfg.mask_history) -> torch.Tensor:
        return rank_users(model, inputs, targets, max_len=max_len, batch_size=cfg.eval_batch_size,
                          mask_history=mask_history, device=device)

    best = (-1.0, 0, None, None)   # ndcg10, epoch, state, valid ranks
    epoch_s, eval_s, bad, epoch = [], [], 0, 0
    # One resume point per fit of a run: a stage may fit several models (the ensemble fusion fits two).
    ckpt = "fit-" + "".join(c if c.isalnum() else "_" for c in desc)
    if (resumed := checkpoint.restore(rt, ckpt, model, opt, [gen])) is not None:   # after a crash
        epoch, (best, bad, epoch_s, eval_s) = resumed
    with rt.track(desc, cfg.epochs) as bar:
        if epoch:            # resumed: the bar starts at the restored epoch, not at 0
            bar.advance(epoch)
        for epoch in range(epoch + 1, cfg.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            total, steps = torch.zeros((), device=device), data.batches(cfg.batch_size, gen)
            for i, idx in enumerate(steps, 1):
                total += train_step(model, opt, data, idx, precision, ranks)   # read every 20 steps only
                if i % 20 == 0:
                    bar.update(step=f"{i}/{len(steps)}", loss=float(total) / i, ndcg10=max(best[0], 0.0))
            total = float(total)                                 # waits for the epoch's last step
            epoch_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            valid_ranks = evaluate(train, valid_t)
            eval_s.append(time.perf_counter() - t0)
            ndcg = metrics(valid_ranks, cfg.mask_history).ndcg10
            if ndcg > best[0]:
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best, bad = (ndcg, epoch, state, valid_ranks), 0
            else:
                bad += 1
            bar.advance(1, loss=total / max(1, len(steps)), ndcg10=ndcg, best=best[0], since_best=bad, patience=cfg.patience)
            if bad >= cfg.patience:
                break
            checkpoint.save(rt, ckpt, epoch, model, opt, [gen], (best, bad, epoch_s, eval_s))   # resume point
    _, best_epoch, state, valid_ranks = best
    model.load_state_dict(state)   # best weights, kept in memory
    t0 = time.perf_counter()
    test_ranks = evaluate(seqs.prefix(1), test_t)
    eval_s.append(time.perf_counter() - t0)
    alt = not cfg.mask_history   # one more pass: the other protocol's test figures, same weights
    alt_ranks = evaluate(seqs.prefix(1), test_t, mask_history=alt)
    result = TrainResult(
        backbone=model.cfg.name, variant=variant, seed=cfg.seed,
        valid=metrics(valid_ranks, cfg.mask_history, precision), test=metrics(test_ranks, cfg.mask_history, precision),
        test_alt=metrics(alt_ranks, alt, precision),
        best_epoch=best_epoch, epochs_run=epoch,
        seconds_per_epoch=round(median(epoch_s), 4), seconds_per_eval=round(median(eval_s), 4),
        train_seconds=round(time.perf_counter() - t_start, 3),
    )
    return Fit(result=result, model=model, ranks={"valid": valid_ranks, "test": test_ranks})


def new_backbone(backbone: BackboneConfig, seed: int, make_embedding: Callable[[], ItemEmbedding]) -> Backbone:
    """Seed torch, then build the backbone around a fresh embedding module (every trainer's order)."""
    torch.manual_seed(seed)
    return build(backbone, make_embedding())


def train_backbone(backbone: BackboneConfig, cfg: TrainerConfig, seqs: Sequences,
                   make_embedding: Callable[[], ItemEmbedding], rt: Runtime, *, variant: str) -> Fit:
    """Seed, build the backbone around a fresh embedding module, fit it."""
    model = new_backbone(backbone, cfg.seed, make_embedding)
    return fit(model, seqs, cfg, rt, variant=variant, desc=f"{variant} {backbone.name}")


def state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as contiguous CPU tensors (safetensors refuses shared or strided storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}

