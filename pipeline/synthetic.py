"""A tiny seeded dataset with planted latent categories, for tests and demos.

Items belong to `categories` true categories; each user prefers a few categories and walks
through them in order: the next item is usually the next item of the current category's
list, so a sequential model can learn it and a grouping can recover the categories.
"""
from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field

from schemas.common import SEED_MAX, Frozen


class SyntheticConfig(Frozen):
    users: int = Field(default=300, ge=1, description="Number of users.")
    items: int = Field(default=120, ge=2, description="Number of items.")
    categories: int = Field(default=6, ge=1, description="True latent categories.")
    prefs_per_user: int = Field(default=2, ge=1, description="Categories each user draws from.")
    min_len: int = Field(default=5, ge=3, description="Shortest sequence.")
    max_len: int = Field(default=20, ge=3, description="Longest sequence.")
    p_follow: float = Field(default=0.8, ge=0, le=1, description="Chance the next item follows its category's order.")
    seed: int = Field(default=0, ge=0, le=SEED_MAX, description="Seed; same seed, same file.")


def item_categories(cfg: SyntheticConfig) -> list[int]:
    """True category of items 1..N (index 0 is padding, -1): balanced, in a seeded random order."""
    return category_tensor(cfg).tolist()


def category_tensor(cfg: SyntheticConfig) -> torch.Tensor:
    """(N+1,) int64 true categories, -1 at index 0."""
    g = torch.Generator().manual_seed(cfg.seed)
    cats = (torch.arange(cfg.items) % cfg.categories)[torch.randperm(cfg.items, generator=g)]
    return torch.cat([torch.tensor([-1]), cats])


def distinct_choices(rows: int, n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """(rows, k) int64: k distinct values of 0..n-1 per row, uniformly (k <= n). Redraws only the
    colliding entries, so the cost stays O(rows * k) even for many categories (no (rows, n) matrix)."""
    out = torch.randint(n, (rows, k), generator=g)
    for j in range(1, k):
        while True:
            clash = (out[:, j:j + 1] == out[:, :j]).any(1)                # (rows,)
            if not clash.any():
                break
            out[clash, j] = torch.randint(n, (int(clash.sum()),), generator=g)
    return out


def synthetic_tensors(cfg: SyntheticConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(items (nnz,) int64 in 1..N, offsets (U+1,) int64): every user's sequence, time order.

    All users walk at once, one position per step: max_len vectorised steps of O(users) each,
    so 1M users take ~4 s (the walk of a user is the one of the module docstring). One thread:
    these memory-bound element-wise ops gain nothing from more, and on a busy machine a second
    OpenMP thread that loses its core stalls every op (measured 15x slower at 100k users)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _walk(cfg)
    finally:
        torch.set_num_threads(threads)


def _walk(cfg: SyntheticConfig) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed + 1)
    cats = category_tensor(cfg)[1:]                                           # (N,)
    n_cats = min(cfg.categories, cfg.items)                                   # only non-empty categories
    members = torch.argsort(cats, stable=True) + 1                            # item ids grouped by category
    size = torch.bincount(cats, minlength=n_cats)                             # (C,)
    first = torch.cumsum(size, 0) - size                                      # (C,) where a category starts
    u, p = cfg.users, min(cfg.prefs_per_user, n_cats)
    prefs = distinct_choices(u, n_cats, p, g)                                 # (U, P)
    lengths = torch.randint(cfg.min_len, max(cfg.min_len, cfg.max_len) + 1, (u,), generator=g)
    width = int(lengths.max())
    cat = prefs[:, 0]
    pos = (torch.rand(u, generator=g) * size[cat]).long()
    walk = torch.empty(u, width, dtype=torch.int64)                           # (U, L)
    rows = torch.arange(u)
    for t in range(width):
        walk[:, t] = members[first[cat] + pos]
        follow = torch.rand(u, generator=g) < cfg.p_follow
        other = prefs[rows, torch.randint(p, (u,), generator=g)]              # jump target category
        jump = (torch.rand(u, generator=g) * size[other]).long()
        pos = torch.where(follow, (pos + 1) % size[cat], jump)
        cat = torch.where(follow, cat, other)
    keep = torch.arange(width) < lengths.unsqueeze(1)                         # (U, L)
    offsets = torch.zeros(u + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    return walk[keep], offsets


def make_synthetic(cfg: SyntheticConfig) -> list[list[int]]:
    """One list of item ids (1..N, time order) per user."""
    items, offsets = synthetic_tensors(cfg)
    flat, bounds = items.tolist(), offsets.tolist()
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def write_synthetic(cfg: SyntheticConfig, path: Path) -> Path:
    """Write the dataset in the one-line-per-user format (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    items, offsets = synthetic_tensors(cfg)
    words, bounds = items.numpy().astype(str).tolist(), offsets.tolist()
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for u, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]), 1):
            f.write(f"{u} {' '.join(words[a:b])}\n")
    tmp.replace(path)
    return path
