"""Item embedding tables, swappable under any backbone.

A backbone never owns its item table: it is handed one of these. Each exposes `.all()`, the full
(N+1, d) table, used both to look up the input items and to score the output (tied weights),
so the `train` stage can swap `base` for `ci` or `tslrec` without touching the backbone.
Row 0 is padding and is always exactly zero, so padded positions add nothing to sums or convs.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """table (N+1, d), ids (...) -> (..., d): `table[ids]`, with a backward that is bit-exact run to run.
    `table[ids]`'s backward (index_put_ with accumulate) adds a repeated id's gradients with atomic float
    adds when torch has more than one thread, in whatever order the threads reach them: on two threads a
    SASRec step's table gradient came out different in 14 of 20 repeats. index_select's backward
    (index_add_) sums them in a fixed order, and is no slower."""
    return table.index_select(0, ids.reshape(-1)).view(*ids.shape, table.shape[-1])


class ItemEmbedding(nn.Module):
    """`base`: a plain learnable table, nn.Embedding(N+1, d, padding_idx=0)."""

    def __init__(self, n_items: int, dim: int):
        super().__init__()
        self.n_items, self.dim = n_items, dim
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=0)
        # Small init as in SASRec/RecBole (N(0, 0.02)): the default N(0, 1) makes the initial
        # softmax over ~10k items very peaked and slows early training.
        nn.init.normal_(self.item.weight, std=0.02)
        with torch.no_grad():
            self.item.weight[0].zero_()
        # padding_idx only blocks the gradient of lookups through nn.Embedding's forward; the
        # backbones index the full table (`all()[seq]`) and score against it, so row 0 would get
        # gradients (Caser's windows read padding columns) and drift. Multiplying by this mask
        # keeps row 0 exactly zero, with zero gradient, for every variant.
        self.register_buffer("keep", (torch.arange(n_items + 1) > 0).float().unsqueeze(1), persistent=False)

    def all(self) -> torch.Tensor:  # (N+1, d)
        return self.item.weight * self.keep

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (...,) -> (..., d)
        return rows(self.all(), ids)


class CategoryEmbedding(ItemEmbedding):
    """`ci`: plain table + a learnable embedding of each item's pre-grouped category, added.

    cluster_map is int64 [N+1] with -1 for padding (row 0); categories are shifted by one so
    index 0 is a padding category whose (zero, frozen) row keeps the padding item at zero."""

    def __init__(self, n_items: int, dim: int, cluster_map: torch.Tensor):
        super().__init__(n_items, dim)
        cluster_map = cluster_map.long().flatten()
        if cluster_map.numel() != n_items + 1:
            raise ValueError(f"cluster_map has {cluster_map.numel()} entries, expected N+1 = {n_items + 1}")
        k = int(cluster_map.max().item()) + 1
        self.category = nn.Embedding(k + 1, dim, padding_idx=0)
        nn.init.normal_(self.category.weight, std=0.02)
        with torch.no_grad():
            self.category.weight[0].zero_()
        # An input, not a weight: not saved in the state dict (it comes from the `group` stage).
        self.register_buffer("cats", (cluster_map + 1).clamp(min=0), persistent=False)

    def all(self) -> torch.Tensor:  # (N+1, d)
        return (self.item.weight + self.category(self.cats)) * self.keep


class GateEmbedding(ItemEmbedding):
    """`tslrec`: gate fusion of a random table with frozen LLM-enhanced embeddings.

        e = g * e_rand + (1 - g) * W e_llm,   g = sigmoid(W_g [e_rand; W e_llm] + b)

    e_llm [N+1, H] is a buffer (frozen, never optimised, not saved); W: H -> d projects it.
    standardize: the hidden states of one-item prompts share a large component (the prompt is the
    same for every item; LayerNorm outputs have norm ~sqrt(H)), which W would pass on to every
    input position and drown the per-item signal. Centering over items 1..N and scaling to unit std
    keeps the geometry between items and removes that shared offset; W then starts at the scale of
    e_rand (std 0.02), so neither side of the gate dominates at initialisation."""

    def __init__(self, n_items: int, dim: int, enhanced: torch.Tensor, standardize: bool = True):
        super().__init__(n_items, dim)
        if enhanced.dim() != 2 or enhanced.shape[0] != n_items + 1:
            raise ValueError(f"enhanced embeddings have shape {tuple(enhanced.shape)}, expected (N+1={n_items + 1}, H)")
        e_llm = enhanced.detach().float().clone()                    # (N+1, H)
        if standardize:
            e_llm = e_llm - e_llm[1:].mean(0, keepdim=True)
            e_llm = e_llm / e_llm[1:].std().clamp_min(1e-12)
        self.register_buffer("e_llm", e_llm, persistent=False)
        self.proj = nn.Linear(enhanced.shape[1], dim, bias=False)  # W
        if standardize:
            nn.init.normal_(self.proj.weight, std=0.02 / enhanced.shape[1] ** 0.5)   # W e_llm ~ N(0, 0.02^2)
        self.gate = nn.Linear(2 * dim, dim)                          # W_g, b

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e_rand = self.item.weight                                    # (N+1, d)
        e_llm = self.proj(self.e_llm)                                # (N+1, d)
        g = torch.sigmoid(self.gate(torch.cat([e_rand, e_llm], -1)))  # (N+1, d) in (0, 1)
        return e_rand, e_llm, g

    def all(self) -> torch.Tensor:  # (N+1, d)
        e_rand, e_llm, g = self.parts()
        return (g * e_rand + (1 - g) * e_llm) * self.keep   # the LLM may give padding a non-zero vector


def make_embedding(variant: str, n_items: int, dim: int, *, cluster_map: torch.Tensor | None = None,
                   enhanced: torch.Tensor | None = None, standardize: bool = True) -> ItemEmbedding:
    if variant in ("base", "pretrain"):
        return ItemEmbedding(n_items, dim)
    if variant == "ci":
        if cluster_map is None:
            raise ValueError("variant 'ci' needs a cluster_map")
        return CategoryEmbedding(n_items, dim, cluster_map)
    if variant == "tslrec":
        if enhanced is None:
            raise ValueError("variant 'tslrec' needs enhanced embeddings")
        return GateEmbedding(n_items, dim, enhanced, standardize)
    raise ValueError(f"unknown embedding variant {variant!r}")
