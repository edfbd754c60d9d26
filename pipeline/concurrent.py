"""`run all`'s independent train runs at once: worker processes on the CPU, the torch threads split between them.

Why: one training does not use two cores well. A SASRec epoch on Beauty took 7.7 s on one thread and 5.6 s on
two (benchmarks/speed.py, bf16, one machine, interleaved), so CI's and TSLRec's trainings side by side on one
thread each end about 1.4x sooner than one after the other on two.

Each worker is a fresh (spawned) process with its own Runner, which computes its run into the shared cache; the
cache's claim locks keep two processes off one key. The parent then takes every record from the cache, as hits.
Under --force, under torchrun, on a GPU or for short runs the runs stay one after another (see `plan`).
"""
from __future__ import annotations

import multiprocessing
import signal
from dataclasses import dataclass
from typing import Any

import torch

from pipeline.console import level, log, set_level
from schemas.pipeline import PipelineConfig
from schemas.runtime import Runtime


MIN_RUN_SECONDS = 30.0   # 'auto' runs in workers only trainings expected to take this long (toy data does not)


@dataclass(frozen=True)
class Plan:
    todo: list[PipelineConfig]   # the runs not in the cache
    workers: int                 # processes computing them (1: the caller computes them itself)
    threads: int                 # torch threads per worker


def plan(runner: Any, stage: str, cfgs: list[PipelineConfig], jobs: int | None, expected_s: float = 0.0) -> Plan:
    """Which runs of `stage` to compute at once, in how many workers of how many threads. jobs None ('auto'):
    one worker per uncached run, up to the torch threads, on the CPU, where a run is expected to take at least
    MIN_RUN_SECONDS (`expected_s`: a spawned worker spends seconds importing torch); jobs=1: none."""
    todo = [c for c in cfgs if not runner.is_cached(stage, c)]
    threads = runner.rt.threads or torch.get_num_threads()
    auto_serial = runner.rt.device != "cpu" or expected_s < MIN_RUN_SECONDS
    serial = runner.force or runner.dist.enabled or (jobs is None and auto_serial)
    workers = 1 if serial else min(len(todo), jobs or threads)
    return Plan(todo, max(workers, 1), max(1, threads // max(workers, 1)))


def compute_concurrently(runner: Any, stage: str, cfgs: list[PipelineConfig], jobs: int | None = None,
                         expected_s: float = 0.0) -> int:
    """Compute the uncached runs of `stage` under `cfgs` in worker processes (`plan`); how many workers ran
    (0: none; the caller computes the runs itself, one after another). A worker's error is raised here."""
    p = plan(runner, stage, cfgs, jobs, expected_s)
    if p.workers < 2:
        return 0
    log(f"computing {len(p.todo)} {stage} runs at once: {p.workers} processes x {p.threads} torch threads")
    rt = runner.rt.model_copy(update={"threads": p.threads, "tracker": None})
    ctx = multiprocessing.get_context("spawn")     # fork would copy torch's thread pools mid-use
    with ctx.Pool(p.workers, initializer=quiet_worker) as pool:   # leaving it terminates the workers (SIGTERM)
        runs = [pool.apply_async(compute_one, (stage, c.model_dump(mode="json"), rt.model_dump(mode="json"), level()))
                for c in p.todo]
        for r in runs:
            r.get()                                # re-raises a worker's error
    return p.workers


def quiet_worker() -> None:
    """A worker leaves Ctrl-C to the parent (which terminates it) and ends on SIGTERM as on an error: its cache
    claim released, its resume point kept, no traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit)


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def compute_one(stage: str, cfg: dict, rt: dict, level: str) -> str:
    """A worker: `stage` under `cfg` through its own Runner (into the cache); the run's key. Its progress is
    plain lines (two bars from two processes would overwrite each other), each naming its run."""
    from pipeline.progress import LineTracker
    from pipeline.runner import Runner

    set_level(level)
    runtime = Runtime.model_validate(rt).model_copy(update={"tracker": LineTracker})
    return Runner(runtime).run(stage, PipelineConfig.model_validate(cfg)).key
