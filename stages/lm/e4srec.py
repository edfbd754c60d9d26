"""E4SRec inference: each user's sequence once through the SFT'd LLM, every item scored by the item head.

validation: input = the user's training part (most recent max_items), target = the validation item;
test:       input = training part + validation item, target = the test item.
Ranks come from `stages.core.evaluate.ranks_from_scores` (0-based among items 1..N, padding excluded,
ties count against the target), and metrics from `stages.core.evaluate.metrics`: the same HR@{5,10} /
NDCG@{5,10} over all users as the backbones. History masking follows `sft.mask_history` (on by default, as the backbones).
"""
from __future__ import annotations

import torch

from schemas.backbone import Metrics
from stages.core.evaluate import history_ids, metrics, ranks_from_scores
from stages.core.sequences import Sequences, length_batches
from stages.lm.model import PromptLM
from stages.lm.prompt import recent_items
from stages.lm.tasks import mask_padding


@torch.no_grad()
def user_ranks(model: PromptLM, inputs: Sequences, targets: torch.Tensor, *, max_items: int, batch_size: int,
               mask_history: bool = False, alt: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """((M,) int64 rank of each user's target given their input sequence, and with `alt` the (M,) ranks under
    the other history-masking setting from the same scores: one LM pass); eval mode, length-bucketed."""
    was_training = model.training
    model.eval()
    lengths = inputs.lengths.clamp(max=max_items)
    ranks = torch.zeros(inputs.n_users, dtype=torch.int64)
    ranks_alt = torch.zeros(inputs.n_users, dtype=torch.int64) if alt else None
    for users in length_batches(lengths, batch_size):        # sorted by length: little padding
        ids, counts = recent_items(inputs.items, inputs.offsets[users], inputs.offsets[users + 1], max_items)
        h, _ = model.hidden(ids, counts)                                     # (B, H)
        scores = mask_padding(model.head(h)).float()                         # (B, N+1)
        hist = history_ids(inputs, users) if mask_history or alt else None
        ranks[users] = ranks_from_scores(scores, targets[users], hist if mask_history else None).cpu()
        if ranks_alt is not None:
            ranks_alt[users] = ranks_from_scores(scores, targets[users], None if mask_history else hist).cpu()
    model.train(was_training)
    return ranks, ranks_alt


def evaluate(model: PromptLM, seqs: Sequences, *, max_items: int, batch_size: int, mask_history: bool = False
             ) -> tuple[Metrics, Metrics, Metrics, dict[str, torch.Tensor]]:
    """(valid metrics, test metrics, test metrics under the other masking setting (`test_alt`, as the backbones
    report it), {"valid": ranks (M,), "test": ranks (M,)}) over all users."""
    kw = dict(max_items=max_items, batch_size=batch_size, mask_history=mask_history)
    valid, _ = user_ranks(model, seqs.train_part(), seqs.valid_targets(), **kw)
    test, test_alt = user_ranks(model, seqs.prefix(1), seqs.test_targets(), alt=True, **kw)
    return (metrics(valid, mask_history), metrics(test, mask_history), metrics(test_alt, not mask_history),
            {"valid": valid, "test": test})
