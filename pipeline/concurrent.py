"""`run all`'s independent train runs at once: worker processes on the CPU, the torch threads split between them.

Why: one training does not use two cores well. A SASRec epoch on Beauty took 7.7 s on one thread and 5.6 s on
two (benchmarks/speed.py, bf16, one machine, interleaved), so CI's and TSLRec's trainings side by side on one
thread each end about 1.4x sooner than one after the other on two.

Each worker is a fresh (spawned) process with its own Runner, which computes its run into the shared cache; the
cache's claim locks keep two processes off one key. The parent then takes every record from the cache, as hits.
When a run ends, the runs still going take its threads at their next step (`Rebalancing`): early stopping ends
CI's and TSLRec's trainings far apart (Beauty with titles: 296 s and 570 s on one thread each,
run-all-beauty-title.json at 51ee319, where the second then ran on one of two idle cores).
Under --force, under torchrun, on a GPU or for short runs the runs stay one after another (see `plan`).
"""
from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator

import torch

from pipeline.console import level, log, set_level
from pipeline.interrupt import Terminated, raise_swallowed_signals_again
from schemas.pipeline import PipelineConfig
from schemas.runtime import NoProgress, Runtime


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
    left = ctx.Value("i", len(p.todo))             # runs not finished: their workers share the threads
    calls = [(compute_one, (stage, c.model_dump(mode="json"), rt.model_dump(mode="json"), level())) for c in p.todo]
    with children_ignore_ctrl_c():
        pool = ctx.Pool(p.workers, initializer=worker_init, initargs=(left, p.workers, p.workers * p.threads))
    in_pool(pool, calls)
    return p.workers


def in_pool(pool: Any, calls: list[tuple[Callable[..., Any], tuple]]) -> list[Any]:
    """The results of calls [(function, args)] run in `pool`'s processes; the first failed call's error (in order) is raised and
    stops the others. After success the workers exit on their own: a SIGTERM at their exit interrupted torch's
    atexit hooks, with a traceback."""
    try:
        results = [pool.apply_async(f, args) for f, args in calls]
        out = [r.get() for r in results]
        pool.close()
        return out
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


_shared: dict[str, Any] = {}   # in a worker: the count of unfinished runs, the workers, the threads they share


@contextlib.contextmanager
def children_ignore_ctrl_c() -> Iterator[None]:
    """Processes spawned inside start with SIGINT ignored, a disposition that exec keeps: a terminal's Ctrl-C
    reaches the whole process group, and one that lands while a child still imports torch, before its
    `worker_signals`, would print a KeyboardInterrupt traceback. The parent ignores SIGINT only while it
    starts them (milliseconds), then ends them itself on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():   # signal.signal: the main thread's only
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def worker_signals() -> None:
    """A worker leaves Ctrl-C to the parent (which terminates it) and ends on SIGTERM as on an error: its cache
    claim released, its resume point kept, no traceback."""
    raise_swallowed_signals_again()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit)


def worker_init(left: Any, workers: int, threads: int) -> None:
    worker_signals()
    _shared.update(left=left, workers=workers, threads=threads)


def _exit(signum: int, frame: Any) -> None:
    raise Terminated(signum)


class Rebalancing(NoProgress):
    """A progress handle that, at every step, gives this worker its share of the threads among the runs still
    going: when CI's training ends, TSLRec's goes on with both cores instead of one. It shows plain lines (two bars
    from two processes would overwrite each other), each naming its run, if `show`."""

    def __init__(self, description: str, total: int | None, show: bool = True):
        from pipeline.progress import LineTracker

        self.lines = LineTracker(description, total) if show else NoProgress()

    def __enter__(self) -> "Rebalancing":
        self.lines.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.lines.__exit__(*exc)

    def advance(self, n: int = 1, **fields: Any) -> None:
        share = max(1, _shared["threads"] // max(1, min(_shared["workers"], _shared["left"].value)))
        if share != torch.get_num_threads():
            torch.set_num_threads(share)
        self.lines.advance(n, **fields)

    def update(self, **fields: Any) -> None:
        self.lines.update(**fields)


def compute_one(stage: str, cfg: dict, rt: dict, level: str) -> str:
    """A worker: `stage` under `cfg` through its own Runner (into the cache); the run's key."""
    from pipeline.runner import Runner

    set_level(level)
    runtime = Runtime.model_validate(rt)
    runtime = runtime.model_copy(update={"tracker": partial(Rebalancing, show=runtime.progress), "progress": True})
    try:
        return Runner(runtime).run(stage, PipelineConfig.model_validate(cfg)).key
    finally:
        with _shared["left"].get_lock():
            _shared["left"].value -= 1
