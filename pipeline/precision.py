"""`precision: auto`, the default: bfloat16 where the device computes it natively, float32 elsewhere.

bf16 makes SASRec epochs 2.9x faster on a CPU with AVX512-BF16, but a CPU without native bf16 (AVX2
only: AMD EPYC before Zen 4, many laptops) emulates it: there a SASRec epoch on Beauty was 12.0x slower
than in float32 (benchmarks/results/speed-beauty-avx2.json), a step at the paper's dimension 256 ~24x.
The runner resolves 'auto' before it computes a key (stages/core/precision.py's `resolve`, the one
definition), so key and record name the arithmetic that ran; on a bf16 machine 'auto' and 'bf16' give the
same key. Stages resolve it with the same function, for callers that bypass the runner.
"""
from __future__ import annotations

from pydantic import BaseModel
from rich.markup import escape

from pipeline.console import log
from schemas.runtime import Runtime
from stages.core import precision


def resolve_precision(cfg: BaseModel, rt: Runtime) -> BaseModel:
    """cfg with every `precision: auto` (at any depth) replaced by this device's choice."""
    updates = {}
    for name, value in cfg:
        if isinstance(value, BaseModel):
            resolved = resolve_precision(value, rt)
            if resolved is not value:
                updates[name] = resolved
        elif name == "precision" and value == "auto":
            updates[name] = precision.resolve(value, rt.device)
    return cfg.model_copy(update=updates) if updates else cfg


def warn_emulated_bf16(cfg: BaseModel, rt: Runtime) -> bool:
    """One line on stderr when bf16 is asked for explicitly on a device that only emulates it."""
    if not _asks_bf16(cfg) or precision.native_bf16(rt.device):
        return False
    log(f"[yellow]warning[/yellow]: precision bf16 on {escape(rt.device)}, which has no native bfloat16: steps run "
        "many times slower than fp32 (12-24x on an AVX2 CPU); 'auto', the default, picks fp32 here")
    return True


def _asks_bf16(cfg: BaseModel) -> bool:
    return any(_asks_bf16(v) if isinstance(v, BaseModel) else (name == "precision" and v == "bf16") for name, v in cfg)
