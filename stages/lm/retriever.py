"""LlamaRec's first stage: a retriever's top-k candidates, and the full ranking both stages make together.

Retriever: our SASRec, the `pretrain` stage's backbone (LlamaRec used LRURec, a linear recurrent
retriever of the same authors; we reuse the ID backbone the project already trains and reports).
It is rebuilt from its state dict: dim, layers and max_len come from the tensors' shapes; the number of
attention heads does not, so each divisor of dim is tried, smallest first, until the rebuilt model
reproduces the pretrain stage's own per-user validation ranks (>= 99% identical, under either
history-masking setting): a wrong rebuild is refused, never silently used.

Candidates of an input (the items [start, end) of a CSR array): the k highest-scoring items, padding
excluded and, with history masking, every input item excluded (the retriever cannot know the target,
so a repeat target is never a candidate); fewer than k when fewer items can be ranked (then padded
with 0).

Full ranking of the two-stage recommender: the candidates in the LM's order, then every other item in
the retriever's order. The target's 0-based rank is its position in the LM's order when it is a
candidate (ties count against it), else max(retriever rank, number of candidates): the retriever's
rank (stages/core/evaluate.py's protocol), never ahead of the candidates the LM ranked. This is LlamaRec's
"overall" figure (its subset metrics weighted with the retriever's on the other users) for any cut-off
up to k.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from schemas.backbone import BackboneConfig
from stages.backbones import Backbone, build
from stages.backbones.embedding import ItemEmbedding
from stages.core.evaluate import ranks_from_scores

AGREEMENT = 0.99   # share of users whose rebuilt rank must equal the pretrain stage's


@dataclass(frozen=True)
class Inputs:
    """One ranking problem per row: the input items items[starts:ends] (a CSR array) and the target."""
    items: torch.Tensor      # (total,) int CSR items
    starts: torch.Tensor     # (U,) int64
    ends: torch.Tensor       # (U,) int64
    targets: torch.Tensor    # (U,) int64 in 1..N

    def __len__(self) -> int:
        return self.starts.numel()

    def subset(self, idx: torch.Tensor) -> "Inputs":
        return Inputs(self.items, self.starts[idx], self.ends[idx], self.targets[idx])


@dataclass(frozen=True)
class Retrieval:
    candidates: torch.Tensor   # (U, k) int64 item ids in retriever order, 0 = no candidate
    ranks: torch.Tensor        # (U,) int64 the retriever's 0-based full-ranking rank of each target
    other_ranks: torch.Tensor  # (U,) int64 the same under the other history-masking setting


def right_aligned(items: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) int64: the last `width` items of each slice, left-padded with 0 (the backbones' layout)."""
    counts = (ends - starts).clamp(min=0, max=width)                       # (B,)
    col = torch.arange(width).unsqueeze(0)                                  # (1, W)
    valid = col >= (width - counts).unsqueeze(1)                            # (B, W)
    pos = (ends.unsqueeze(1) - width + col).clamp(min=0, max=max(items.numel() - 1, 0))
    return torch.where(valid, items[pos].long(), torch.zeros((), dtype=torch.long))


def _shape(state: dict[str, torch.Tensor]) -> tuple[int, int, int, int]:
    """(n_items, dim, layers, max_len) of a SASRec state dict; ValueError for another backbone."""
    if "pos.weight" not in state or "blocks.0.q.weight" not in state:
        raise ValueError("llamarec's retriever is the pretrain stage's SASRec (pretrain.backbone.name=sasrec); "
                         "its backbone artifact holds another architecture")
    n_items, dim = state["embedding.item.weight"].shape
    layers = len({m.group(1) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    return n_items - 1, dim, layers, state["pos.weight"].shape[0]


def sasrec_from_state(state: dict[str, torch.Tensor], heads: int) -> Backbone:
    """The SASRec of `state` with `heads` attention heads, eval mode, float32."""
    n_items, dim, layers, max_len = _shape(state)
    cfg = BackboneConfig(name="sasrec", dim=dim, layers=layers, heads=heads, max_len=max_len, dropout=0.0)
    model = build(cfg, ItemEmbedding(n_items, dim))
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


@torch.no_grad()
def retrieve(model: Backbone, inp: Inputs, k: int, mask_history: bool, batch_size: int = 256) -> Retrieval:
    """Top-k candidates and the retriever's rank of each row's target (float32 scores)."""
    table = model.embedding.all()                                           # (N+1, d)
    cands = torch.zeros(len(inp), k, dtype=torch.int64)
    ranks = torch.zeros(2, len(inp), dtype=torch.int64)                     # (asked, other) setting
    for rows in torch.arange(len(inp)).split(batch_size):
        seq = right_aligned(inp.items, inp.starts[rows], inp.ends[rows], model.max_len)   # (B, L)
        nonpad = (seq != 0).any(0)
        if nonpad.any():   # all-padding leading columns change nothing (right-aligned positions): drop them
            seq = seq[:, int(nonpad.int().argmax()):]
        h = model(seq.to(table.device), table)[:, -1]                       # (B, d)
        scores = model.scores(h, table).float().cpu()                       # (B, N+1), column 0 = -inf
        hist = full_history(inp, rows)                                      # (B, H)
        ranks[0, rows] = ranks_from_scores(scores, inp.targets[rows], hist if mask_history else None)
        ranks[1, rows] = ranks_from_scores(scores, inp.targets[rows], None if mask_history else hist)
        if mask_history:
            scores.scatter_(1, hist, float("-inf"))                         # no input item is a candidate
            scores[:, 0] = float("-inf")
        top = scores.topk(min(k, scores.shape[1] - 1), dim=1)               # (B, k')
        cands[rows, :top.indices.shape[1]] = torch.where(top.values.isfinite(), top.indices, 0)
    return Retrieval(cands, ranks[0], ranks[1])


def full_history(inp: Inputs, rows: torch.Tensor) -> torch.Tensor:
    """(B, H) int64 every input item of each row, left-padded with 0; H >= 1."""
    width = max(1, int((inp.ends[rows] - inp.starts[rows]).max())) if rows.numel() else 1
    return right_aligned(inp.items, inp.starts[rows], inp.ends[rows], width)


def load_retriever(state: dict[str, torch.Tensor], valid: Inputs, pretrain_valid_ranks: torch.Tensor
                   ) -> tuple[Backbone, int]:
    """(SASRec, heads): the first head count whose validation ranks reproduce the pretrain stage's."""
    _, dim, _, _ = _shape(state)
    tried = []
    for heads in (h for h in range(1, dim + 1) if dim % h == 0):
        model = sasrec_from_state(state, heads)
        got = retrieve(model, valid, 1, True)
        agree = max(float((r == pretrain_valid_ranks).double().mean()) for r in (got.ranks, got.other_ranks))
        if agree >= AGREEMENT:
            return model, heads
        tried.append(f"{heads}: {agree:.1%}")
    raise ValueError(f"no head count rebuilds the pretrain backbone (share of validation ranks reproduced per "
                     f"head count: {', '.join(tried)}); is the backbone artifact from the same data?")


def combined_ranks(retriever_ranks: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor,
                   lm_scores: torch.Tensor) -> torch.Tensor:
    """(U,) int64 0-based final ranks. retriever_ranks (U,), candidates (U, k) (0 = none), targets (U,),
    lm_scores (U, k) the LM's score of each candidate (rows without the target among them are ignored)."""
    real = candidates != 0                                                  # (U, k)
    at = (candidates == targets.unsqueeze(1)) & real                        # (U, k) the target's slot
    hit = at.any(1)                                                         # (U,)
    t = lm_scores.gather(1, at.float().argmax(1, keepdim=True))             # (U, 1) target's LM score
    lm_rank = ((lm_scores >= t) & real).sum(1) - 1                          # pessimistic ties
    return torch.where(hit, lm_rank, torch.maximum(retriever_ranks, real.sum(1))).long()
