"""ID-based sequential backbones sharing one interface.

In:  item ids (B, L), left-padded with 0 and right-aligned (the last column is the latest item).
Out: per-position sequence representations (B, L, d); position t depends only on items <= t
     (all four backbones are causal, see each file for how), so position t can be trained to
     predict item t+1 without ever seeing it.
Scores: representations times the item table `embedding.all()` (N+1, d), tied with the input;
     column 0 (padding) is masked to -inf.
"""
from __future__ import annotations

import math
from importlib import import_module

import torch
import torch.nn as nn

from schemas.backbone import BackboneConfig
from stages.backbones.embedding import ItemEmbedding, rows

NAMES = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "caser": "Caser", "fmlprec": "FMLPRec"}


def modules_for(name: str) -> list[str]:
    """The modules whose code can change a trained `name` backbone (for the cache's code digest):
    editing Caser must not invalidate cached SASRec runs."""
    return ["stages.backbones", "stages.backbones.embedding", f"stages.backbones.{name}"]


class Backbone(nn.Module):
    def __init__(self, cfg: BackboneConfig, embedding: ItemEmbedding):
        super().__init__()
        if embedding.dim != cfg.dim:
            raise ValueError(f"embedding dim {embedding.dim} != backbone dim {cfg.dim}")
        self.cfg = cfg
        self.max_len = cfg.max_len
        self.embedding = embedding

    def encode(self, x: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """x (B, L, d) item embeddings of seq (B, L) -> (B, L, d). Subclasses implement it."""
        raise NotImplementedError

    def forward(self, seq: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        # The table is passed in when the caller also needs it for scoring: a fused table
        # (ci / tslrec) is then computed once per step, not twice.
        if seq.shape[1] > self.max_len:
            seq = seq[:, -self.max_len:]
        table = self.embedding.all() if table is None else table   # (N+1, d)
        return self.encode(rows(table, seq), seq)                   # (B, L, d)

    def scores(self, h: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """(..., d) -> (..., N+1) logits over all items, padding column at -inf."""
        table = self.embedding.all() if table is None else table
        s = h @ table.T
        s[..., 0] = -math.inf
        return s


class Dropout(nn.Dropout):
    """nn.Dropout drawing its mask with rand_like: the same thing, ~2x faster on CPU, where
    bernoulli_ is one of the most expensive ops of a training step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep


def init_weights(backbone: Backbone) -> None:
    """N(0, 0.02) linears/embeddings, unit LayerNorm (as SASRec / FMLP-Rec in RecBole).

    The item embedding module is left alone: it initialises itself (and keeps row 0 zero)."""
    skip = {id(m) for m in backbone.embedding.modules()}
    for m in backbone.modules():
        if id(m) in skip:
            continue
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build(cfg: BackboneConfig, embedding: ItemEmbedding) -> Backbone:
    """The backbone named cfg.name around the given item embedding module."""
    cls = getattr(import_module(f"stages.backbones.{cfg.name}"), NAMES[cfg.name])
    return cls(cfg, embedding)
