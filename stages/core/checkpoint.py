"""Per-epoch resume points of the training loops (`pretrain`, `train`, `sft`).

A checkpoint is one file, `<rt.checkpoint_dir>/<name>.pt`, rewritten atomically after every
completed epoch: the epoch, the trained weights, the optimizer state, every random generator the
loop draws from (torch's global one, its CUDA ones, and the loop's own `torch.Generator`s), and
the loop's own bookkeeping (early stopping, timings, losses). Restoring all of that makes the rest
of the run draw exactly what an uninterrupted run would have drawn, so the final result and its
digests are the same. The runner picks the folder (under the run's cache key) and removes it once
the run is recorded; stages only read and write this file, and without a folder (a stage called
directly, e.g. in tests) both calls do nothing.

Under torch.distributed every rank calls save and restore (the folder set on every rank); rank 0 alone
reads and writes the file. Weights, optimizer and the loop's generators are the same on every rank (summed
gradients, one batch order); torch's global generator is not (each rank draws its own dropout masks), so save
gathers every rank's and restore gives each rank its own: a resumed data-parallel run draws what an
uninterrupted one would. Resumed by another number of processes, the epochs are kept, a rank without a
saved state takes rank 0's, and the run is no longer bit for bit the uninterrupted one (neither are two
uninterrupted runs with different numbers of processes).

The file carries the sha256 of its payload: a byte flipped in the tensor data (a bad disk, a copy
gone wrong) still unpickles, and resuming from it stored other artifacts under the same key. The
runner checks it before the stage runs (`check`), says so in one line and removes a bad one; the
stage then starts from epoch 1. Layout: MAGIC, one JSON line {"sha256", "bytes"}, then the bytes
torch.save writes.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch

from schemas.runtime import Runtime
from stages.core.atomic import write_atomically
from stages.core.distributed import parallel

FORMAT = 2
MAGIC = b"tslrec checkpoint 2\n"


class CorruptCheckpoint(Exception):
    """A checkpoint that must not be resumed from (the message says why)."""


def _path(rt: Runtime, name: str) -> Path | None:
    return None if rt.checkpoint_dir is None else Path(rt.checkpoint_dir) / f"{name}.pt"


def _weights(model: torch.nn.Module, trainable_only: bool) -> dict[str, torch.Tensor]:
    """Trained tensors: the whole state dict, or (LLMs: the frozen base is reloaded anyway) only
    the parameters that train."""
    if trainable_only:
        return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _rng_states(gens: list[torch.Generator]) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "gens": [g.get_state() for g in gens],
    }


def save(rt: Runtime, name: str, epoch: int, model: torch.nn.Module, opt: torch.optim.Optimizer,
         gens: list[torch.Generator], loop_state: Any, *, trainable_only: bool = False) -> None:
    """Record the state at the end of `epoch` (1-based); replaces the previous epoch's file."""
    path = _path(rt, name)
    if path is None:
        return
    ranks = parallel(rt)
    rngs = ranks.gather_objects(_rng_states(gens))   # [one per rank]: their dropout draws differ
    if not ranks.leader:
        return
    state = {"format": FORMAT, "epoch": epoch, "weights": _weights(model, trainable_only),
             "optimizer": opt.state_dict(), "rng": rngs[0], "rng_ranks": rngs, "loop": loop_state}
    # Serialized in memory, then written by Python: the digest needs the bytes anyway, and a full disk
    # then raises OSError(ENOSPC) instead of torch's "[enforce fail at inline_container.cc] unexpected pos".
    data = _encode(state)
    write_atomically(path, lambda tmp: tmp.write_bytes(data))   # a kill mid-write keeps the previous epoch's


def _encode(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    head = json.dumps({"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}).encode()
    return MAGIC + head + b"\n" + payload


def _payload(path: Path) -> bytes:
    """The torch.save bytes of a checkpoint file, verified; CorruptCheckpoint says what is wrong."""
    raw = path.read_bytes()
    if not raw.startswith(MAGIC):
        raise CorruptCheckpoint("has no digest (written by an older tslrec, or not a checkpoint)")
    head, newline, payload = raw[len(MAGIC):].partition(b"\n")
    try:
        meta = json.loads(head)
        digest, size = str(meta["sha256"]), int(meta["bytes"])
    except (ValueError, KeyError, TypeError):
        raise CorruptCheckpoint("is truncated or damaged (its header does not parse)") from None
    if len(payload) < size:
        raise CorruptCheckpoint(f"is truncated ({len(payload)} of {size} bytes)")
    if len(payload) > size or hashlib.sha256(payload).hexdigest() != digest:
        raise CorruptCheckpoint("does not match its sha256 (corrupted)")
    return payload


def check(path: Path) -> str | None:
    """Why the checkpoint file `path` must not be resumed from; None if its digest holds."""
    try:
        _payload(Path(path))
    except CorruptCheckpoint as e:
        return str(e)
    except OSError as e:
        return f"is unreadable ({e.strerror or e})"
    return None


def restore(rt: Runtime, name: str, model: torch.nn.Module, opt: torch.optim.Optimizer,
            gens: list[torch.Generator]) -> tuple[int, Any] | None:
    """(last completed epoch, loop state) after loading weights, optimizer and generators from the
    checkpoint; None when there is none (a fresh run) or it fails its digest or does not load (then the
    run starts over; the runner has said so, see `check`)."""
    path = _path(rt, name)
    if path is None:
        return None
    ranks = parallel(rt)
    state = ranks.broadcast(_load(path) if ranks.leader else None)   # rank 0 reads, every rank applies
    if (state is None or state.get("format") != FORMAT or len(state["rng"]["gens"]) != len(gens)
            or not set(state["weights"]) <= set(model.state_dict())):
        return None            # none, damaged, or written by other code: start over rather than load half of it
    model.load_state_dict(state["weights"], strict=False)
    opt.load_state_dict(state["optimizer"])
    per_rank = state.get("rng_ranks") or [state["rng"]]
    torch.set_rng_state(per_rank[ranks.rank]["torch"] if ranks.rank < len(per_rank) else state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    for gen, gen_state in zip(gens, state["rng"]["gens"]):
        gen.set_state(gen_state)
    return int(state["epoch"]), state["loop"]


def _load(path: Path) -> dict[str, Any] | None:
    """The checkpoint's state; None when there is none or it fails its digest or does not load."""
    if not path.is_file():
        return None
    try:
        return torch.load(io.BytesIO(_payload(path)), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged checkpoint only costs the epochs it held
        return None
