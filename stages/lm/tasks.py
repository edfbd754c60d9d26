"""SFT tasks on the same LLM machinery: which instances, which head, which loss.

A task turns (training sequences, group artifact) into `Instances` (a CSR slice of items per
instance and a target), builds the head on h^u, and scores it. Only "group" (TSLRec's
user-level preference reconstruction) exists; "next_item" (E4SRec: every training prefix is an
instance, an item head over N items, cross-entropy) is a slot for later.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

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

TASKS: dict[str, Task] = {"group": GROUP}


def get_task(name: str) -> Task:
    if name == "next_item":
        raise NotImplementedError("sft task 'next_item' (the E4SRec baseline) is not implemented yet; "
                                  "only task='group' is available")
    if name not in TASKS:
        raise ValueError(f"unknown sft task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]
