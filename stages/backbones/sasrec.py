"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence.

Leakage: causal by construction (position t attends to positions <= t only), so every
position is trained to predict the next item in one pass over each sequence.
Layout follows the original code: item embedding * sqrt(d) + learned absolute position,
dropout, blocks of (attention, point-wise feed-forward) as in `Block`, a final LayerNorm.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from schemas.backbone import BackboneConfig
from stages.backbones import Backbone, Dropout, init_weights
from stages.backbones.embedding import ItemEmbedding


class Block(nn.Module):
    """One block of the original SASRec code (not the GPT pre-LN block): queries come from
    LN(h) but keys/values from h itself, the residual adds onto the normalised queries, and the
    feed-forward sublayer also reads (and adds onto) a normalised stream."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.p = heads, dropout
        self.ln_attn = nn.LayerNorm(dim, eps=1e-8)
        self.q, self.kv = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln_ff = nn.LayerNorm(dim, eps=1e-8)
        # Point-wise feed-forward of the original (d -> d, ReLU, dropout after each layer): a
        # wider one overfits the sparse datasets (Beauty, Yelp) without gain.
        self.ff = nn.Sequential(nn.Linear(dim, dim), Dropout(dropout), nn.ReLU(), nn.Linear(dim, dim), Dropout(dropout))

    def forward(self, h: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        B, L, d = h.shape
        H = self.heads
        x = self.ln_attn(h)                                                     # (B, L, d) queries' input
        k, v = self.kv(h).split(d, dim=-1)                                      # 2 x (B, L, d)
        q, k, v = (t.view(B, L, H, d // H).transpose(1, 2) for t in (self.q(x), k, v))  # (B, H, L, d/H)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.p if self.training else 0.0)  # (B, H, L, d/H)
        h = x + self.proj(y.transpose(1, 2).reshape(B, L, d))                   # (B, L, d)
        h = self.ln_ff(h)
        return h + self.ff(h)                                                   # (B, L, d)


class SASRec(Backbone):
    def __init__(self, cfg: BackboneConfig, embedding: ItemEmbedding):
        super().__init__(cfg, embedding)
        self.pos = nn.Embedding(cfg.max_len, cfg.dim)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.dropout) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.dim, eps=1e-8)
        init_weights(self)

    def encode(self, x: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        keep = (seq != 0).unsqueeze(-1).to(x.dtype)                             # (B, L, 1)
        # Right-aligned positions: the latest item always gets position max_len-1, so a batch
        # cut to its longest sequence (L < max_len) embeds exactly as a full-width one.
        pos = torch.arange(self.max_len - L, self.max_len, device=seq.device)  # (L,)
        h = self.drop(x * math.sqrt(d) + self.pos(pos)) * keep                  # (B, L, d)
        # Query i may attend key j if j <= i (causal) and j is an item; a padding query keeps
        # itself so that no row is empty (an all-masked row gives NaN); its output is zeroed.
        causal = torch.ones(L, L, dtype=torch.bool, device=seq.device).tril()  # (L, L)
        eye = torch.eye(L, dtype=torch.bool, device=seq.device)
        allowed = (causal & (seq != 0)[:, None, None, :]) | eye                 # (B, 1, L, L)
        for block in self.blocks:
            h = block(h, allowed) * keep                                        # (B, L, d)
        return self.ln_f(h) * keep                                              # (B, L, d)
