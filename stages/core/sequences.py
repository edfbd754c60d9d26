"""CSR interaction sequences and the leave-one-out split, shared by every stage.

A dataset is two tensors: `items` int32 [nnz] (item ids 1..N, 0 is padding) and `offsets`
int64 [M+1]; user u (0-based row) owns items[offsets[u]:offsets[u+1]] in time order.
Leave-one-out: last item = test target, second-to-last = validation target, the rest = training.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sequences:
    items: torch.Tensor     # (nnz,) int32
    offsets: torch.Tensor   # (M+1,) int64
    n_items: int            # N; ids run 1..N

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "Sequences":
        return cls(items=t["items"], offsets=t["offsets"], n_items=int(t["n_items"].item()))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"items": self.items, "offsets": self.offsets, "n_items": torch.tensor(self.n_items, dtype=torch.int64)}

    @property
    def n_users(self) -> int:
        return self.offsets.numel() - 1

    @property
    def lengths(self) -> torch.Tensor:   # (M,)
        return self.offsets[1:] - self.offsets[:-1]

    def user(self, u: int) -> torch.Tensor:
        return self.items[self.offsets[u]:self.offsets[u + 1]]

    def test_targets(self) -> torch.Tensor:   # (M,) last item
        return self.items[self.offsets[1:] - 1].long()

    def valid_targets(self) -> torch.Tensor:  # (M,) second-to-last item
        return self.items[self.offsets[1:] - 2].long()

    def prefix(self, drop_last: int) -> "Sequences":
        """Each user's sequence without its last `drop_last` items (2 = training part, 1 = for test)."""
        lengths = (self.lengths - drop_last).clamp(min=0)
        keep = torch.ones(self.items.numel(), dtype=torch.bool)
        ends = self.offsets[1:]
        for k in range(1, drop_last + 1):   # mask the last k positions of every user (vectorized)
            keep[ends - k] = False
        offsets = torch.zeros_like(self.offsets)
        offsets[1:] = torch.cumsum(lengths, 0)
        return Sequences(items=self.items[keep], offsets=offsets, n_items=self.n_items)

    def train_part(self) -> "Sequences":
        return self.prefix(2)

    def padded(self, max_len: int, users: torch.Tensor | None = None) -> torch.Tensor:
        """Right-aligned (B, max_len) int64 matrix of the most recent items, left-padded with 0."""
        users = torch.arange(self.n_users) if users is None else users
        starts, ends = self.offsets[users], self.offsets[users + 1]
        pos = torch.arange(max_len)                                   # (L,)
        idx = ends.unsqueeze(1) - max_len + pos.unsqueeze(0)          # (B, L)
        valid = idx >= starts.unsqueeze(1)
        out = torch.zeros(users.numel(), max_len, dtype=torch.int64)
        out[valid] = self.items[idx[valid]].long()
        return out


def length_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
                   window: int = 64) -> list[torch.Tensor]:
    """Split row indices into batches of similar length, so that right padding stays small.

    With a generator (training): shuffle, sort by length within windows of `window` batches, cut,
    and shuffle the batch order. Without: sort everything by length (deterministic, for inference)."""
    n = lengths.numel()
    if n == 0:
        return []
    if generator is None:
        order = torch.sort(lengths, stable=True).indices
        return list(order.split(batch_size))
    perm = torch.randperm(n, generator=generator)
    chunks = []
    for chunk in perm.split(batch_size * window):
        srt = chunk[torch.sort(lengths[chunk], stable=True).indices]
        chunks.extend(srt.split(batch_size))
    order = torch.randperm(len(chunks), generator=generator).tolist()
    return [chunks[i] for i in order]
