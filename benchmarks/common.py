"""What every benchmark script shares: where it ran (one provenance helper), the command that ran it, a
runtime that logs a line per epoch, and an atomic JSON write."""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PACKAGES = ("torch", "transformers", "peft", "scikit-learn", "pydantic", "numpy", "tslrec")


def git_commit(tree: Path = ROOT) -> str:
    """HEAD's commit of `tree` ('unknown' outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """The machine as RESULTS.md describes it: CPU model and cores, native bf16, torch threads, device (GPU)."""
    import torch

    from stages.core.precision import native_bf16

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = {"platform": platform.platform(), "processor": platform.processor(), "cpu": cpu, "cpu_count": os.cpu_count(),
           "cpu_native_bf16": native_bf16("cpu"),   # bf16 timings differ 10-30x with it (pipeline/precision.py)
           "torch_threads": threads or torch.get_num_threads(), "device": device,
           "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    if device.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def provenance(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """{commit, machine, versions}: what every results file records about where it was made."""
    return {"commit": git_commit(), "machine": machine(device, threads), "versions": versions()}


def command(argv: list[str] | None = None) -> str:
    """The command line that ran this process: `python -m benchmarks.NAME ARGS` for a benchmark module."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = f"python -m {spec.name}" if spec is not None and spec.name.startswith("benchmarks.") else f"python {sys.argv[0]}"
    return " ".join([head, shlex.join(sys.argv[1:] if argv is None else argv)]).rstrip()


def set_flags(sets) -> list[str]:
    """["--set", s, ...] for each override in `sets`: how a benchmark passes its overrides on to a command."""
    return [flag for s in sets for flag in ("--set", s)]


def log_runtime(device: str = "cpu", threads: int | None = None, cache_dir: Path | None = None, **kw: Any):
    """A Runtime whose progress is one stderr line per advance (an epoch): readable in a nohup log."""
    from pipeline.progress import LineTracker
    from schemas.runtime import Runtime

    return Runtime(progress=True, tracker=partial(LineTracker, every=0.0), device=device, threads=threads,
                   **({"cache_dir": cache_dir} if cache_dir else {}), **kw)


def write_json(path: Path, record: dict[str, Any], indent: int = 1) -> None:
    """`record` as JSON at `path`, atomically: a crash never leaves a half-written results file."""
    from stages.core.atomic import write_atomically

    text = json.dumps(record, indent=indent) + "\n"
    write_atomically(Path(path), lambda tmp: tmp.write_text(text))
