"""GRU4Rec (Hidasi et al., 2016), as in RecBole: embedding dropout, a GRU, a dense layer
(+ input scaling and an output LayerNorm, see below).

Leakage: a left-to-right GRU is causal, so every position is trained to predict the next item
in one pass over each sequence.
Padding: sequences arrive left-padded; a GRU would run through the padding (its biases move
the state even on zero inputs), making the output depend on how much padding a batch has.
So each row is rotated to put its items first (right-padded), the GRU runs from h0 = 0 on the
real items, and the rotation is undone: outputs are independent of the padding.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from schemas.backbone import BackboneConfig
from stages.backbones import Backbone, Dropout, init_weights
from stages.backbones.embedding import ItemEmbedding


class GRU4Rec(Backbone):
    def __init__(self, cfg: BackboneConfig, embedding: ItemEmbedding):
        super().__init__(cfg, embedding)
        self.drop = Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.dim, cfg.dim, num_layers=cfg.layers, batch_first=True,
                          dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.dense = nn.Linear(cfg.dim, cfg.dim)
        # Output LayerNorm (as SASRec's final one): with the N(0, 0.02) item table and a tanh-
        # bounded GRU state the first scores are ~1e-3 and the plain RecBole GRU4Rec needs tens
        # of epochs to leave the uniform distribution (measured on Beauty: NDCG@10 0.006 after
        # 5 epochs); normalised outputs put the scores at a useful scale from the start.
        self.ln = nn.LayerNorm(cfg.dim)
        init_weights(self)
        # Orthogonal recurrent / Xavier input weights: the usual GRU init (N(0, 0.02) would make
        # the recurrence nearly memoryless at the start).
        for name, w in self.gru.named_parameters():
            if name.startswith("weight_hh"):
                nn.init.orthogonal_(w)
            elif name.startswith("weight_ih"):
                nn.init.xavier_uniform_(w)
            else:
                nn.init.zeros_(w)

    def encode(self, x: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        n = (seq != 0).sum(1, keepdim=True)                                     # (B, 1) items per row
        ar = torch.arange(L, device=seq.device).unsqueeze(0)                    # (1, L)
        to_front = ((ar + L - n) % L).unsqueeze(-1).expand(B, L, d)             # (B, L, d) left -> right-padded
        back = ((ar + n) % L).unsqueeze(-1).expand(B, L, d)                     # (B, L, d) right -> left-padded
        x = x * math.sqrt(d)                                                    # O(1) inputs, as SASRec
        h, _ = self.gru(self.drop(x).gather(1, to_front))                       # (B, L, d), items first
        h = self.ln(self.dense(self.drop(h))).gather(1, back)                   # (B, L, d), items last again
        return h * (seq != 0).unsqueeze(-1).to(h.dtype)
