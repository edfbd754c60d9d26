"""Peak memory of one stage run: resident set size (RSS) and, where used, CUDA memory.

RSS: Linux keeps the process's high-water mark (VmHWM in /proc/self/status), and writing "5" to
/proc/self/clear_refs resets it to the current RSS, so the mark read after a stage is that stage's
own peak. Where that reset is unavailable (not Linux, restricted /proc), `resource.getrusage`'s
ru_maxrss is used instead: the process's peak so far, an upper bound (marked by `rss_exact=False`).
CUDA: torch's max_memory_allocated, reset before the stage (tensors only, not the allocator's cache).
"""
from __future__ import annotations

import resource
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

MB = 1 << 20
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


@dataclass
class Peak:
    rss_mb: float | None = None
    rss_exact: bool = False
    cuda_mb: float | None = None


def _reset_rss_peak() -> bool:
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _rss_peak_mb(exact: bool) -> float:
    if exact:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB        # kB
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # kB on Linux, bytes on macOS
    return maxrss / MB if sys.platform == "darwin" else maxrss * 1024 / MB


def _cuda_used(device: str) -> bool:
    return device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_initialized()


@contextmanager
def track_peak(device: str) -> Iterator[Peak]:
    """`with track_peak(rt.device) as peak: ...` -> peak.rss_mb, peak.cuda_mb (None off CUDA)."""
    peak = Peak(rss_exact=_reset_rss_peak())
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    yield peak
    peak.rss_mb = round(_rss_peak_mb(peak.rss_exact), 1)
    if cuda and _cuda_used(device):
        peak.cuda_mb = round(torch.cuda.max_memory_allocated(device) / MB, 1)
