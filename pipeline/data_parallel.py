"""`run all`'s SFT, data-parallel on the CPU: one process per torch thread, a gloo group between them.

Why: one SFT process uses two cores poorly (its steps are many small matmuls, elementwise passes and the
dropout masks' random draws, which torch makes on one thread), while two processes of one thread each run
two halves of every batch side by side. `torchrun` already trains a stage data-parallel
(pipeline/distributed.py); here `run all` starts such a group itself, for the stage that dominates its time
on the CPU, so that the one command a user types gets it.

Each rank is a spawned process that joins the group through the same environment variables torchrun sets and
asks its own Runner for the stage: every rank draws the same global batches and takes its slice, gradients are
summed before each step (stages/core/distributed.py), rank 0 alone writes the cache and the per-epoch resume
point (which holds every rank's generator: stages/core/checkpoint.py). The parent then takes the record from the
cache as a hit. The same training as in one process, bit for bit only with dropout 0 (each rank draws its own
masks).
When: on the CPU, without --force, by default for an SFT expected to take long enough to pay for the ranks' start
(the pretrain took MIN_RUN_SECONDS or more, as for `run all`'s concurrent trainings), and under `--jobs N`
(N >= 2) always: one rank per thread, up to N; `--jobs 1` keeps it in this process. Measured, one cold `run all`
with titles each: 1,182 s by default, its SFT 515 s in 2 ranks; 1,510 s under `--jobs 1`, its SFT 634 s.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import socket
import time
from typing import Any

import torch

from pipeline.concurrent import MIN_RUN_SECONDS, children_ignore_ctrl_c, worker_signals
from pipeline.console import level, log, set_level
from schemas.pipeline import PipelineConfig
from schemas.runtime import Runtime

STAGES = ("sft",)   # the stages run all trains data-parallel (its longest on the CPU)


def ranks_for(runner: Any, stage: str, cfg: PipelineConfig, jobs: int | None, expected_s: float = 0.0) -> int:
    """How many processes compute `stage` under `cfg`: 1 (this one) when it is cached, under --force, under
    torchrun, off the CPU or under --jobs 1; else one per thread, up to --jobs N, by default ('auto') only for a
    training expected to take MIN_RUN_SECONDS or more (`expected_s`: a rank spends seconds importing torch)."""
    if stage not in STAGES or runner.is_cached(stage, cfg) or runner.force or runner.dist.enabled:
        return 1
    if runner.rt.device != "cpu" or jobs == 1 or (jobs is None and expected_s < MIN_RUN_SECONDS):
        return 1
    threads = runner.rt.threads or torch.get_num_threads()
    return max(1, min(jobs or threads, threads))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def compute_data_parallel(runner: Any, stage: str, cfg: PipelineConfig, jobs: int | None = None,
                          expected_s: float = 0.0) -> int:
    """Compute `stage` under `cfg` in a group of rank processes (`ranks_for`) into the cache; how many ranks
    ran it (0: none, the caller computes it itself). A rank's error stops the others and is raised here."""
    ranks = ranks_for(runner, stage, cfg, jobs, expected_s)
    if ranks < 2:
        return 0
    threads = max(1, (runner.rt.threads or torch.get_num_threads()) // ranks)
    log(f"training {stage} data-parallel: {ranks} processes x {threads} torch threads (gloo)")
    rt = runner.rt.model_copy(update={"threads": threads, "tracker": None}).model_dump(mode="json")
    env = {"WORLD_SIZE": str(ranks), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    ctx = multiprocessing.get_context("spawn")       # fork would copy torch's thread pools mid-use
    errors = ctx.SimpleQueue()
    procs = [ctx.Process(target=rank_main, args=(errors, r, env, stage, cfg.model_dump(mode="json"), rt, level()))
             for r in range(ranks)]
    try:
        with children_ignore_ctrl_c():
            for p in procs:
                p.start()
        while any(p.is_alive() for p in procs) and all(p.exitcode in (None, 0) for p in procs):
            time.sleep(0.2)
        if any(p.exitcode not in (None, 0) for p in procs):
            raise first_error(errors, procs)
    finally:
        stop(procs)
    return ranks


def stop(procs: list[Any], grace_s: float = 2.0) -> None:
    """End the ranks still running: SIGTERM first (a rank in Python code exits cleanly: no temp file, no lock
    left), then SIGKILL for a rank that outlives the grace: one whose peer failed waits in a collective, deaf to
    SIGTERM's Python handler (its cache claim, an flock, dies with it). The grace is shorter than the interrupt
    watchdog's retry (pipeline/interrupt.py, 3 s), and a second signal during it only cuts it short: a rank left
    running would outlive this process, holding the terminal (CI saw one, 60 s after Ctrl-C)."""
    try:
        for p in procs:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + grace_s
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        for p in procs:
            if p.pid is not None:
                p.join()


def first_error(errors: Any, procs: list[Any]) -> BaseException:
    """The first error a rank reported: the cause (a rank that fails leaves its peers a lost connection to
    report after it; a follower of a failed rank 0 only exits), else one naming the rank and its exit code."""
    if not errors.empty():
        return errors.get()[1]
    rank, p = next((r, p) for r, p in enumerate(procs) if p.exitcode not in (None, 0))
    return RuntimeError(f"data-parallel rank {rank} ended with exit code {p.exitcode}")


def rank_main(errors: Any, rank: int, env: dict[str, str], stage: str, cfg: dict, rt: dict, log_level: str) -> None:
    """A rank's process: `compute_rank`; an error goes to the parent (pickled, else as its one line), exit 1.
    It ends through `end_process`, without the interpreter's teardown, which aborts now and then once a process
    has joined a group (the parent would see exit code -6 after a good SFT)."""
    from pipeline.distributed import end_process

    worker_signals()
    try:
        compute_rank(rank, env, stage, cfg, rt, log_level)
    except SystemExit as e:                           # a follower whose leader failed: nothing to report
        end_process(e.code if isinstance(e.code, int) and e.code else 1)
    except BaseException as e:                        # noqa: BLE001: every error must reach the parent
        try:
            pickle.dumps(e)
        except Exception:                             # noqa: BLE001
            e = RuntimeError(f"{type(e).__name__}: {e}")
        errors.put((rank, e))                         # a SimpleQueue: written to the pipe before put returns
        end_process(1)
    end_process(0)


def compute_rank(rank: int, env: dict[str, str], stage: str, cfg: dict, rt: dict, log_level: str) -> str:
    """One rank: join the group (as under torchrun), run `stage` through its own Runner, leave; the run's key."""
    from pipeline.distributed import join, shutdown
    from pipeline.progress import LineTracker
    from pipeline.runner import Runner

    os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(rank))
    set_level(log_level)
    runtime = join(Runtime.model_validate(rt).model_copy(update={"tracker": LineTracker}))   # rank > 0: quiet
    key = Runner(runtime).run(stage, PipelineConfig.model_validate(cfg)).key
    shutdown()       # not after an error: its barrier would wait for a rank stuck in a collective
    return key
