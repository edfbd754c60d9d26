"""Learning-rate schedules of the SFT stage: constant (TSLRec's default) or E4SRec's warmup + cosine.

"cosine" is transformers' `get_cosine_schedule_with_warmup`, the schedule E4SRec's HF Trainer uses
(`lr_scheduler_type="cosine"`, `warmup_steps=100`): the factor rises linearly from 0 over the
warmup steps, then follows half a cosine down to 0 at the last step. Stepped once per optimizer step.
"""
from __future__ import annotations

import torch


def lr_scheduler(opt: torch.optim.Optimizer, schedule: str, warmup_steps: int, total_steps: int
                 ) -> torch.optim.lr_scheduler.LRScheduler:
    if schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)   # exactly the plain optimizer
    if schedule == "cosine":
        from transformers import get_cosine_schedule_with_warmup

        return get_cosine_schedule_with_warmup(opt, num_warmup_steps=warmup_steps, num_training_steps=max(total_steps, 1))
    raise ValueError(f"unknown lr schedule {schedule!r}; choose constant or cosine")
