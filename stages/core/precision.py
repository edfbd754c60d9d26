"""Precision names to torch dtypes, and `auto` resolved for a device: the one place for both.

`auto` (the default of every precision field) is bfloat16 where the device computes it natively and
float32 elsewhere: a CPU without native bf16 (AVX2 only) emulates it many times slower than fp32
(pipeline/precision.py has the figures). The runner resolves `auto` before it computes a key, so the key
and the record name the arithmetic that ran; the stages resolve it with the same function for callers
that bypass the runner (there it finds nothing left to resolve).
"""
from __future__ import annotations

import functools

import torch

from schemas.names import AUTO

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def dtype_of(precision: str) -> torch.dtype:
    if precision not in DTYPES:
        raise ValueError(f"precision {precision!r}: choose from {', '.join(DTYPES)}")
    return DTYPES[precision]


@functools.lru_cache(maxsize=None)
def native_bf16(device: str) -> bool:
    """x86 CPUs: AVX512-BF16 or AMX (others emulate bfloat16, many times slower); CUDA: a bf16 GPU (Ampere
    on). Other CPUs (ARM, ...) and devices: False, the safe side (fp32 is never the slow choice)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if kind == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")   # torch.cpu's own CPUID checks
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return False


def resolve(precision: str, device: str) -> str:
    """'auto' -> 'bf16' where `device` has native bfloat16, else 'fp32'; any other value as is."""
    if precision != AUTO:
        return precision
    return "bf16" if native_bf16(device) else "fp32"
