"""SFT tasks on the same LLM machinery: which instances, which head, which loss.

A task turns (training sequences, group artifact) into `Instances` (a CSR slice of items per
instance and a target), builds the head on h^u, and scores it.
- "group" (TSLRec, user-level): one instance per user with training items; target ḡ^u; softmax
  head over K groups; Eq. 3. A seeded fraction of users is held out for validation.
- "next_item" (E4SRec, instance-level): for training items t1..tn of a user, the n-1 prefixes
  (t1)->t2, (t1,t2)->t3, ..., (t1..t_{n-1})->tn; an item head over N+1 columns whose padding column
  0 is set to -inf (never predicted, never ranked); cross-entropy. No user is held out: validation
  ranks every user's validation item (stages/lm/e4srec.py), which is never a training target.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from stages.lm.prompt import INSTRUCTION, NEXT_ITEM_INSTRUCTION
from stages.sequences import Sequences


def preference_mse(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Eq. 3: squared error summed over the K groups of each user; then over users.

    reduction: "mean" averages over users (what we optimise: the step size does not depend on the
    batch size; Eq. 3's sum differs only by the constant factor M), "sum" is Eq. 3 as written,
    "none" gives the per-user sums (B,)."""
    per_user = (pred - target).pow(2).sum(-1)
    if reduction == "mean":
        return per_user.mean()
    if reduction == "sum":
        return per_user.sum()
    if reduction == "none":
        return per_user
    raise ValueError(f"unknown reduction {reduction!r}")


@dataclass(frozen=True)
class Instances:
    users: torch.Tensor     # (n,) int64 user row of each instance (the validation split is by user)
    starts: torch.Tensor    # (n,) int64 first item position in the (training) CSR items
    ends: torch.Tensor      # (n,) int64 one past the last item position
    targets: torch.Tensor   # (n, ...) what the head must predict

    def __len__(self) -> int:
        return self.users.numel()

    def subset(self, idx: torch.Tensor) -> "Instances":
        return Instances(self.users[idx], self.starts[idx], self.ends[idx], self.targets[idx])


@dataclass(frozen=True)
class Task:
    name: str
    head_name: str                                                     # prefix of the head in the 'heads' artifact
    n_out: Callable[[Sequences, dict[str, torch.Tensor]], int]
    instances: Callable[[Sequences, dict[str, torch.Tensor]], Instances]   # from the TRAINING part only
    build_head: Callable[[int, int], nn.Module]
    predict: Callable[[torch.Tensor], torch.Tensor]                   # logits -> prediction
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]        # (prediction, targets) -> scalar
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]      # (prediction, targets) -> per-instance error
    instruction: str = INSTRUCTION                                     # prompt instruction, formatted with k
    holdout_users: bool = True                                         # validate on held-out users' instances


def _group_instances(train: Sequences, groups: dict[str, torch.Tensor]) -> Instances:
    pref = groups["user_pref"].to(torch.float32)
    if pref.shape[0] != train.n_users:
        raise ValueError(f"user_pref has {pref.shape[0]} rows but there are {train.n_users} users")
    users = torch.nonzero(train.lengths > 0).flatten()   # a user without training items has nothing to read
    return Instances(users=users, starts=train.offsets[users], ends=train.offsets[users + 1], targets=pref[users])


GROUP = Task(
    name="group",
    head_name="group_head",
    n_out=lambda seqs, groups: int(groups["user_pref"].shape[1]),
    instances=_group_instances,
    build_head=lambda h, k: nn.Linear(h, k),
    predict=lambda logits: torch.softmax(logits, dim=-1),                 # Eq. 2
    loss=lambda pred, target: preference_mse(pred, target, "mean"),      # Eq. 3, averaged over users
    metric=lambda pred, target: preference_mse(pred, target, "none"),
)


def _next_item_instances(train: Sequences, groups: dict[str, torch.Tensor]) -> Instances:
    """Every training prefix of every user: n training items give n-1 instances (the validation
    and test items are not in `train`, so they can never be a target)."""
    n_inst = (train.lengths - 1).clamp(min=0)                                   # (M,)
    users = torch.repeat_interleave(torch.arange(train.n_users), n_inst)         # (n,)
    first = torch.repeat_interleave(torch.cumsum(n_inst, 0) - n_inst, n_inst)   # (n,) first instance of its user
    j = torch.arange(users.numel()) - first                                     # (n,) 0..n_u-2
    starts = train.offsets[users]
    ends = starts + j + 1                                                       # prefix t1..t_{j+1}
    return Instances(users=users, starts=starts, ends=ends, targets=train.items[ends].long())


def mask_padding(logits: torch.Tensor) -> torch.Tensor:
    """(B, N+1) item logits with the padding column 0 at -inf: it takes no probability mass in the
    cross-entropy and can never outrank an item."""
    return torch.cat([torch.full_like(logits[:, :1], float("-inf")), logits[:, 1:]], dim=1)


NEXT_ITEM = Task(
    name="next_item",
    head_name="item_head",
    n_out=lambda seqs, groups: seqs.n_items + 1,
    instances=_next_item_instances,
    build_head=lambda h, n: nn.Linear(h, n),
    predict=mask_padding,                                                  # logits over N+1 columns
    loss=lambda logits, target: F.cross_entropy(logits, target),
    metric=lambda logits, target: F.cross_entropy(logits, target, reduction="none"),
    instruction=NEXT_ITEM_INSTRUCTION,
    holdout_users=False,
)

TASKS: dict[str, Task] = {"group": GROUP, "next_item": NEXT_ITEM}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown sft task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]
