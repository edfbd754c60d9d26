"""The data-parallel helpers the stages' loops call: shard a batch, sum gradients, gather rows, broadcast.

Under torchrun (pipeline/distributed.py joins the process group and sets `Runtime.rank` / `world`) every
rank draws the same global batches and takes its contiguous slice (`shard`); gradients and losses are
summed over ranks (`all_reduce_grads`), so the step equals one process's up to float summation order.
In a single process every helper is the identity, so stages call them unconditionally.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as tdist


def parallel(rt: Any) -> "Dist":
    """The helpers of the process `rt` (a Runtime) describes: its rank among `world` processes."""
    return Dist(rt.rank, rt.world)


class Dist:
    """The helpers training loops call; identity operations in a single process."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch of indices (possibly empty)."""
        if not self.enabled:
            return idx
        return idx.tensor_split(self.world)[self.rank]

    def all_reduce_grads(self, model: torch.nn.Module, loss: torch.Tensor | None) -> torch.Tensor:
        """Sum the gradients of `model`'s trainable parameters and the local losses over ranks, in one
        flat buffer; -> the global loss, a 0-dim tensor (no host sync in one process). A parameter no
        rank produced a gradient for keeps grad None (Adam then skips it, as in one process); one only
        some ranks touched gets zeros elsewhere."""
        if not self.enabled:
            return loss.detach() if loss is not None else torch.zeros(())
        params = [p for p in model.parameters() if p.requires_grad]
        dev = params[0].device if params else torch.device("cpu")
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=dev)
        local = loss.detach().float().reshape(1).to(dev) if loss is not None else torch.zeros(1, device=dev)
        flat = torch.cat([has, local] + [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                                         for p in params])
        tdist.all_reduce(flat)
        n = len(params)
        offset = n + 1
        for p, flag in zip(params, flat[:n].tolist()):
            size = p.numel()
            p.grad = flat[offset:offset + size].view_as(p).to(p.dtype).clone() if flag > 0 else None
            offset += size
        return flat[n].clone()

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's (n_r, ...) rows in rank order (ranks may hold different n_r)."""
        if not self.enabled:
            return rows
        dev = torch.device(f"cuda:{torch.cuda.current_device()}") if tdist.get_backend() == "nccl" else torch.device("cpu")
        counts = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(self.world)]
        tdist.all_gather(counts, torch.tensor([rows.shape[0]], device=dev))
        most = int(max(c.item() for c in counts))
        padded = torch.zeros((most, *rows.shape[1:]), dtype=rows.dtype, device=dev)
        padded[:rows.shape[0]] = rows.to(dev)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        tdist.all_gather(parts, padded)
        return torch.cat([p[:int(c.item())] for p, c in zip(parts, counts)]).to(rows.device)

    def broadcast(self, obj: Any = None) -> Any:
        """Rank 0's `obj` on every rank (pickled; tensors travel on the CPU)."""
        if not self.enabled:
            return obj
        box = [obj if self.leader else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's `obj` (pickled), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()
