"""A tiny seeded dataset with planted latent categories, for tests and demos.

Items belong to `categories` true categories; each user prefers a few categories and walks
through them in order: the next item is usually the next item of the current category's
list, so a sequential model can learn it and a grouping can recover the categories.
"""
from __future__ import annotations

import random
from pathlib import Path

from pydantic import Field

from schemas.common import Frozen


class SyntheticConfig(Frozen):
    users: int = Field(default=300, ge=1, description="Number of users.")
    items: int = Field(default=120, ge=2, description="Number of items.")
    categories: int = Field(default=6, ge=1, description="True latent categories.")
    prefs_per_user: int = Field(default=2, ge=1, description="Categories each user draws from.")
    min_len: int = Field(default=5, ge=3, description="Shortest sequence.")
    max_len: int = Field(default=20, ge=3, description="Longest sequence.")
    p_follow: float = Field(default=0.8, ge=0, le=1, description="Chance the next item follows its category's order.")
    seed: int = Field(default=0, description="Seed; same seed, same file.")


def item_categories(cfg: SyntheticConfig) -> list[int]:
    """True category of items 1..N (index 0 is padding, -1)."""
    rng = random.Random(cfg.seed)
    cats = [i % cfg.categories for i in range(cfg.items)]
    rng.shuffle(cats)
    return [-1] + cats


def make_synthetic(cfg: SyntheticConfig) -> list[list[int]]:
    """One list of item ids (1..N, time order) per user."""
    rng = random.Random(cfg.seed + 1)
    cats = item_categories(cfg)
    members = [[i for i in range(1, cfg.items + 1) if cats[i] == c] for c in range(cfg.categories)]
    seqs = []
    for _ in range(cfg.users):
        prefs = rng.sample(range(cfg.categories), min(cfg.prefs_per_user, cfg.categories))
        length = rng.randint(cfg.min_len, cfg.max_len)
        cat = prefs[0]
        pos = rng.randrange(len(members[cat]))
        seq = []
        for _ in range(length):
            seq.append(members[cat][pos])
            if rng.random() < cfg.p_follow:
                pos = (pos + 1) % len(members[cat])
            else:                            # jump to another preferred category
                cat = rng.choice(prefs)
                pos = rng.randrange(len(members[cat]))
        seqs.append(seq)
    return seqs


def write_synthetic(cfg: SyntheticConfig, path: Path) -> Path:
    """Write the dataset in the one-line-per-user format (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [" ".join(map(str, [u, *s])) for u, s in enumerate(make_synthetic(cfg), 1)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path
