"""Data parallelism through torch.distributed, for runs launched by `torchrun`.

    torchrun --nproc-per-node 4 tslrec.py run sft -d beauty        # or: torchrun ... -m tslrec run ...

`init_from_env()` joins the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT env vars; gloo on CPU, nccl on CUDA). Without them, or with WORLD_SIZE=1,
nothing is initialised and every helper below is a no-op, so stages call them unconditionally.

Equivalence with one process: every rank draws the same global batches (same seeded generator),
takes a contiguous slice of each (`shard`), and the gradients are summed over ranks
(`all_reduce_grads`) after each rank weighted its loss by its share of the global normaliser.
The summed gradient is then the single-process gradient up to float summation order; Adam steps
identically on every rank, so weights stay equal. Dropout draws its masks per rank, so the match is
exact only with dropout 0 (same distribution otherwise, as any DDP).

The helpers the stages' loops call (shard, all-reduce, gather, broadcast) are stages/core/distributed.py.

Who does what (pipeline/runner.py): rank 0 alone reads and writes the cache and prints; the others
follow: they receive each stage's record (and, for the stages in PARALLEL_STAGES, its input tensors)
by broadcast, join the computation of those stages, and wait at a broadcast meanwhile.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import torch
import torch.distributed as tdist

# Stages whose training / inference loops shard over ranks; the rest run on rank 0 alone.
PARALLEL_STAGES = frozenset({"pretrain", "train", "sft", "augment"})
# Followers wait at a broadcast while rank 0 computes a serial stage (k-means of 1M users ...).
TIMEOUT = timedelta(seconds=float(os.environ.get("TSLREC_DIST_TIMEOUT_S", 4 * 3600)))
_joined = False   # this process has joined a process group (it ends through `end_process`)


@dataclass(frozen=True)
class Launch:
    rank: int
    world: int
    local_rank: int


def launch_from_env() -> Launch:
    """Rank, world size and local rank as torchrun sets them (0, 1, 0 without torchrun)."""
    env = os.environ
    return Launch(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def init_from_env(device: str) -> tuple[Launch, str]:
    """Join torchrun's process group (once); -> (launch, this rank's device).

    `device` "cuda" becomes "cuda:<local rank>" (one GPU per process); "cpu" stays."""
    launch = launch_from_env()
    if launch.world <= 1:
        return launch, device
    cuda = device.startswith("cuda")
    if cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda under torchrun, but CUDA is not available")
        device = f"cuda:{launch.local_rank}"
        torch.cuda.set_device(device)
    global _joined
    _joined = True
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT,
                                 **({"device_id": torch.device(device)} if cuda else {}))
    return launch, device


def shutdown() -> None:
    """Leave the process group (torchrun expects a clean exit).

    Every rank meets at a barrier first: a rank that destroys its gloo group while a peer still
    holds a connection to it aborts now and then ("terminate called without an active
    exception", about 1 run in 12 here), which fails the whole torchrun. The barrier took that to
    about 1 in 60; the rest came from the interpreter's teardown after it (see `end_process`)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()


def joined() -> bool:
    """Whether this process joined a process group (then it must end through `end_process`)."""
    return _joined


def end_process(code: int) -> NoReturn:
    """End a process that joined a group now, its output flushed, without the interpreter's teardown.

    Why: about 1 run in 60 here (and once in CI), a rank that had printed its result and left its group
    aborted in that teardown ("terminate called without an active exception", faulthandler: no Python frame),
    a C++ thread of torch.distributed destroyed while still joinable; torchrun then fails the whole run
    (SIGABRT), and `run all`'s data-parallel parent saw a rank's exit code -6 after a good SFT. Nothing at
    exit is left to do: the cache entries are written and renamed, the locks released."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe: nothing more can reach it
            pass
    os._exit(code)


def join(rt: Any) -> Any:
    """The Runtime of this process under torchrun: rank, world, its device; quiet, bar-less followers."""
    launch, device = init_from_env(rt.device)
    if launch.world <= 1:
        return rt
    update: dict[str, Any] = {"rank": launch.rank, "world": launch.world, "device": device}
    if launch.rank != 0:
        from pipeline.console import set_level

        set_level("quiet")
        update.update(progress=False, log_level="quiet")
    return rt.model_copy(update=update)
