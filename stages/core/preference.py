"""A user's preference over item groups: the L1-normalized histogram of the groups of their items (ḡ^u).

The `group` stage computes it over each user's training part (its artifact `user_pref`); the SFT target
(stages/lm/tasks.py) over the items its prompt shows.
"""
from __future__ import annotations

import torch

from stages.core.sequences import Sequences


def group_counts(train: Sequences, cluster_map: torch.Tensor, k: int) -> torch.Tensor:
    """(M, K) int64: how many of each user's items in `train` fall into each group (one bincount)."""
    m = train.n_users
    users = torch.repeat_interleave(torch.arange(m), train.lengths)            # (nnz,) owner of each item
    groups = cluster_map[train.items.long()]                                  # (nnz,)
    if bool((groups < 0).any()) or bool((groups >= k).any()):
        raise ValueError("cluster_map gives a group outside 0..K-1 for an item in the sequences")
    return torch.bincount(users * k + groups, minlength=m * k).view(m, k)


def preference_histogram(train: Sequences, cluster_map: torch.Tensor, k: int) -> torch.Tensor:
    """ḡ^u for every user: (M, K) float32, rows non-negative and summing to 1.

    `train` must already be the training part (the caller decides what counts); rows of users with
    no items are uniform."""
    counts = group_counts(train, cluster_map, k).to(torch.float64)
    totals = counts.sum(1, keepdim=True)
    pref = torch.where(totals > 0, counts / totals.clamp(min=1), torch.full_like(counts, 1.0 / k))
    return pref.to(torch.float32)
