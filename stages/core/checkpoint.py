"""Per-epoch resume points of the training loops (`pretrain`, `train`, `sft`).

A checkpoint is one file, `<rt.checkpoint_dir>/<name>.pt`, rewritten atomically after every
completed epoch: the epoch, the trained weights, the optimizer state, every random generator the
loop draws from (torch's global one, its CUDA ones, and the loop's own `torch.Generator`s), and
the loop's own bookkeeping (early stopping, timings, losses). Restoring all of that makes the rest
of the run draw exactly what an uninterrupted run would have drawn, so the final result and its
digests are the same. The runner picks the folder (under the run's cache key) and removes it once
the run is recorded; stages only read and write this file, and without a folder (a stage called
directly, e.g. in tests) both calls do nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from schemas.runtime import Runtime
from stages.core.atomic import write_atomically

FORMAT = 1


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
    state = {"format": FORMAT, "epoch": epoch, "weights": _weights(model, trainable_only),
             "optimizer": opt.state_dict(), "rng": _rng_states(gens), "loop": loop_state}
    write_atomically(path, lambda tmp: torch.save(state, tmp))   # a kill mid-write keeps the previous epoch's


def restore(rt: Runtime, name: str, model: torch.nn.Module, opt: torch.optim.Optimizer,
            gens: list[torch.Generator]) -> tuple[int, Any] | None:
    """(last completed epoch, loop state) after loading weights, optimizer and generators from the
    checkpoint; None when there is none (a fresh run) or it is unreadable (then the run starts over)."""
    path = _path(rt, name)
    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged checkpoint only costs the epochs it held
        return None
    if (state.get("format") != FORMAT or len(state["rng"]["gens"]) != len(gens)
            or not set(state["weights"]) <= set(model.state_dict())):
        return None            # written by other code: start over rather than load half of it
    model.load_state_dict(state["weights"], strict=False)
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    for gen, gen_state in zip(gens, state["rng"]["gens"]):
        gen.set_state(gen_state)
    return int(state["epoch"]), state["loop"]
