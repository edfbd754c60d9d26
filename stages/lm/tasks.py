"""SFT tasks on the same LLM machinery: which instances, which head, which loss.

A task turns (training sequences, group artifact) into `Instances` (a CSR slice of items per
instance and a target), builds the head on h^u, and scores it.
- "group" (TSLRec, user-level): one instance per user with training items; target ḡ^u, by default
  (`sft.target=prompt`) the histogram of exactly the items the prompt shows (the last max_items
  training items), or (`all`) of every training item (the group stage's user_pref); softmax head
  over K groups; Eq. 3. A seeded fraction of users is held out for validation.
- "next_item" (E4SRec, instance-level): for training items t1..tn of a user, the prefixes
  ()->t1 (with `empty_prefix`, E4SRec's default), (t1)->t2, ..., (t1..t_{n-1})->tn, by default
  (`recent_targets`, E4SRec's maxlen window) only those whose target is among the last max_items; an item head
  over N+1 columns (bias-free by default, as E4SRec's score layer) whose padding column 0 is set to
  -inf (never predicted, never ranked); cross-entropy. No user is held out: validation ranks every
  user's validation item (stages/lm/e4srec.py), which is never a training target.
The LoRA targets are the task's too (`lora_targets`): attention projections for "group", the
feed-forward projections for "next_item" (E4SRec's gate_proj, up_proj, down_proj on Llama).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from schemas.sft import SftConfig
from stages.core.preference import preference_histogram
from stages.core.sequences import Sequences
from stages.lm.load import default_lora_targets
from stages.lm.prompt import INSTRUCTION, NEXT_ITEM_INSTRUCTION

# Feed-forward Linear layers by full module name: Llama & co (gate/up/down_proj), BERT & co
# (intermediate.dense and the layer's own output.dense, not attention.output.dense), DistilBERT.
FFN_MODULE = re.compile(r"(^|\.)(gate_proj|up_proj|down_proj|intermediate\.dense|layer\.\d+\.output\.dense|ffn\.lin[12])$")


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
    instances: Callable[[Sequences, dict[str, torch.Tensor], SftConfig], Instances]   # TRAINING part only; resolved cfg
    build_head: Callable[[int, int, bool], nn.Module]                 # (H, outputs, bias)
    lora_targets: Callable[[Any], list[str]]                          # base LM -> LoRA target modules
    predict: Callable[[torch.Tensor], torch.Tensor]                   # logits -> prediction
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]        # (prediction, targets) -> scalar
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]      # (prediction, targets) -> per-instance error
    instruction: str = INSTRUCTION                                     # prompt instruction, formatted with k
    holdout_users: bool = True                                         # validate on held-out users' instances


def ffn_lora_targets(lm: Any) -> list[str]:
    """Sorted full names of the feed-forward projections of `lm` (E4SRec's LoRA targets)."""
    names = sorted(n for n, m in lm.named_modules() if isinstance(m, nn.Linear) and FFN_MODULE.search(n))
    if not names:
        raise ValueError(f"no feed-forward projections found in a {getattr(lm.config, 'model_type', '?')} model; "
                         "set sft.target_modules")
    return names


def last_items(seqs: Sequences, n: int) -> Sequences:
    """Each user's last min(length, n) items, in order (what a prompt of at most n items shows)."""
    lengths = seqs.lengths.clamp(max=n)                                       # (M,)
    first_kept = torch.repeat_interleave(seqs.offsets[1:] - lengths, lengths)  # (nnz',) owner's first kept position
    rank = torch.arange(first_kept.numel()) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    offsets = torch.zeros_like(seqs.offsets)
    offsets[1:] = torch.cumsum(lengths, 0)
    return Sequences(items=seqs.items[first_kept + rank], offsets=offsets, n_items=seqs.n_items)


def group_targets(train: Sequences, groups: dict[str, torch.Tensor], cfg: SftConfig) -> torch.Tensor:
    """(M, K) ḡ^u: of the prompt's items (the last max_items) or, with target="all", every training item."""
    if cfg.target == "all":
        return groups["user_pref"].to(torch.float32)
    k = int(groups["user_pref"].shape[1])
    return preference_histogram(last_items(train, cfg.max_items), groups["cluster_map"], k)


def window_targets(items: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, cluster_map: torch.Tensor,
                   k: int) -> torch.Tensor:
    """(n, K) ḡ of exactly the items in each [start, end) slice of the CSR items (what each prompt shows)."""
    lengths = ends - starts
    offsets = torch.zeros(lengths.numel() + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    pos = torch.repeat_interleave(starts - offsets[:-1], lengths) + torch.arange(int(offsets[-1]))
    window = Sequences(items=items[pos], offsets=offsets, n_items=int(cluster_map.numel()) - 1)
    return preference_histogram(window, cluster_map, k)


def _group_instances(train: Sequences, groups: dict[str, torch.Tensor], cfg: SftConfig) -> Instances:
    pref = groups["user_pref"]
    if pref.shape[0] != train.n_users:
        raise ValueError(f"user_pref has {pref.shape[0]} rows but there are {train.n_users} users")
    pref = group_targets(train, groups, cfg)
    users = torch.nonzero(train.lengths > 0).flatten()   # a user without training items has nothing to read
    return Instances(users=users, starts=train.offsets[users], ends=train.offsets[users + 1], targets=pref[users])


GROUP = Task(
    name="group",
    head_name="group_head",
    n_out=lambda seqs, groups: int(groups["user_pref"].shape[1]),
    instances=_group_instances,
    build_head=lambda h, k, bias: nn.Linear(h, k, bias=bias),
    lora_targets=default_lora_targets,                                 # attention projections
    predict=lambda logits: torch.softmax(logits, dim=-1),                 # Eq. 2
    loss=lambda pred, target: preference_mse(pred, target, "mean"),      # Eq. 3, averaged over users
    metric=lambda pred, target: preference_mse(pred, target, "none"),
)


def _next_item_instances(train: Sequences, groups: dict[str, torch.Tensor], cfg: SftConfig) -> Instances:
    """Every training prefix of every user: n training items give n-1 instances, n with the empty
    prefix; with recent_targets only the prefixes whose target is among the last max_items items
    (the validation and test items are not in `train`, so they can never be a target)."""
    lengths = train.lengths                                                     # (M,)
    shortest = torch.full_like(lengths, 0 if cfg.empty_prefix else 1)           # shortest prefix per user
    if cfg.recent_targets:                                                      # E4SRec: targets among the last max_items
        shortest = torch.maximum(shortest, lengths - cfg.max_items)
    n_inst = (lengths - shortest).clamp(min=0)                                  # (M,)
    users = torch.repeat_interleave(torch.arange(train.n_users), n_inst)         # (n,)
    first = torch.repeat_interleave(torch.cumsum(n_inst, 0) - n_inst, n_inst)   # (n,) first instance of its user
    j = torch.arange(users.numel()) - first                                     # (n,) 0..n_inst-1
    starts = train.offsets[users]
    ends = starts + shortest[users] + j                                         # prefix t1..t_{shortest+j}
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
    build_head=lambda h, n, bias: nn.Linear(h, n, bias=bias),
    lora_targets=ffn_lora_targets,                                     # E4SRec: the feed-forward projections
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
