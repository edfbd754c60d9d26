"""Full-ranking evaluation: every user's target ranked among all items 1..N.

Ranks are 0-based and pessimistic: rank = #items scoring strictly higher than the target
+ #other items scoring exactly the same. A model that scores everything equal (or collapsed)
thus gets the worst rank, never a lucky hit. A NaN target score also gets the worst rank.
HR@k = mean(rank < k); NDCG@k = mean(1/log2(rank+2) if rank < k) (one relevant item).
History masking (on by default; RecBole's sequential full-sort, used by the paper, has it off)
removes the user's input items from the ranking, but never the target itself. It matters on every
dataset, not only where targets repeat history: a next-item model scores the items just seen high
(SASRec on Beauty, seed 42, same weights: test NDCG@10 0.0418 unmasked, 0.0568 masked).
"""
from __future__ import annotations

import math

import torch

from schemas.backbone import Metrics
from stages.sequences import Sequences

KS = (5, 10)


def ranks_from_scores(scores: torch.Tensor, targets: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
    """scores (B, N+1) with column 0 = padding, targets (B,) in 1..N, history (B, N+1) bool -> (B,) int64."""
    targets = targets.long().to(scores.device)
    t = scores.gather(1, targets.unsqueeze(1))                             # (B, 1) target score
    s = scores[:, 1:]                                                      # (B, N): padding never competes
    if history is not None:
        hist = history[:, 1:].clone()
        hist.scatter_(1, targets.unsqueeze(1) - 1, False)                   # the target is never masked
        s = s.masked_fill(hist, -math.inf)
    greater = (s > t).sum(1)
    ties = (s == t).sum(1) - 1                                             # other items tied with the target
    ranks = greater + ties
    worst = s.shape[1] - 1
    return torch.where(t.squeeze(1).isnan(), torch.full_like(ranks, worst), ranks).long()


def metrics(ranks: torch.Tensor, mask_history: bool) -> Metrics:
    r = ranks.double()
    out = {}
    for k in KS:
        hit = r < k
        out[f"hr{k}"] = hit.double().mean().item()
        out[f"ndcg{k}"] = torch.where(hit, 1.0 / torch.log2(r + 2.0), torch.zeros_like(r)).mean().item()
    return Metrics(**out, n_users=int(ranks.numel()), mask_history=mask_history)


def history_mask(inputs: Sequences, users: torch.Tensor, n_items: int) -> torch.Tensor:
    """(B, N+1) bool: True where item i is in user u's (full, untruncated) input sequence."""
    starts, lengths = inputs.offsets[users], inputs.lengths[users]
    total = int(lengths.sum())
    rows = torch.repeat_interleave(torch.arange(users.numel()), lengths)                  # (T,)
    first = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)          # (T,)
    flat = torch.repeat_interleave(starts, lengths) + torch.arange(total) - first          # (T,) indices into items
    mask = torch.zeros(users.numel(), n_items + 1, dtype=torch.bool)
    mask[rows, inputs.items[flat].long()] = True
    return mask


@torch.no_grad()
def rank_users(model: torch.nn.Module, inputs: Sequences, targets: torch.Tensor, *, max_len: int,
               batch_size: int = 1024, mask_history: bool = False, device: str | torch.device = "cpu") -> torch.Tensor:
    """Rank each user's target given their input sequence (most recent max_len items). -> (M,) int64.

    `model(seq, table)` gives (B, L, d); its last position scores every item via `model.scores`."""
    was_training = model.training
    model.eval()
    table = model.embedding.all()                                         # (N+1, d), computed once
    out = []
    for b in range(0, inputs.n_users, batch_size):
        users = torch.arange(b, min(b + batch_size, inputs.n_users))
        seq = inputs.padded(max_len, users)                                # (B, L)
        nonpad = (seq != 0).any(0)
        if nonpad.any():   # drop all-padding leading columns: outputs do not depend on them
            seq = seq[:, int(nonpad.int().argmax()):]
        h = model(seq.to(device), table)[:, -1]                            # (B, d) latest position
        scores = model.scores(h, table).float()                            # (B, N+1)
        hist = history_mask(inputs, users, inputs.n_items).to(device) if mask_history else None
        out.append(ranks_from_scores(scores, targets[users], hist).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)
