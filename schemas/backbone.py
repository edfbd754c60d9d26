"""Contracts shared by `pretrain` and `train`: backbone architecture, trainer, evaluation."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.common import SEED_MAX, Frozen

BackboneName = Literal["sasrec", "gru4rec", "caser", "fmlprec"]


class BackboneConfig(Frozen):
    name: BackboneName = Field(default="sasrec", description="ID-based sequential recommender.")
    dim: int = Field(default=64, ge=1, description="Item embedding / hidden size d.")
    layers: int = Field(default=2, ge=1, description="Number of blocks (attention, GRU or filter layers).")
    heads: int = Field(default=1, ge=1, description="Attention heads (SASRec).")
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0, description="Dropout on embeddings and hidden states.")
    max_len: int = Field(default=50, ge=2, description="Most recent items a sequence keeps.")


class TrainerConfig(Frozen):
    lr: float = Field(default=1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description="Adam weight decay.")
    batch_size: int = Field(default=256, ge=1, description="Training sequences per step.")
    epochs: int = Field(default=200, ge=1, description="Maximum epochs.")
    patience: int = Field(default=10, ge=1, description="Stop after this many evaluations without a better validation NDCG@10.")
    eval_batch_size: int = Field(default=128, ge=1, description="Users per evaluation batch: each batch's (B, N) score block is computed at once, so a small batch keeps it in the CPU cache.")
    seed: int = Field(default=42, ge=0, le=SEED_MAX, description="Seed for init, shuffling and dropout.")
    precision: Literal["auto", "fp32", "bf16"] = Field(default="auto", description="Arithmetic of the full-softmax loss (scoring matmuls and softmax): 'bf16' runs them in bfloat16 with float32 row sums, loss and gradient accumulation (fp32 master weights), and autocasts the backbone to bfloat16. 'auto': bf16 where the device has native bfloat16 (AVX512-BF16 or AMX, a bf16 GPU), else fp32, since emulated bfloat16 is many times slower than fp32; the record names the one that ran. Speed and quality of each: docs/method-choices.md. Evaluation always scores in float32 (bfloat16 scores would create ties).")
    mask_history: bool = Field(default=True, description="Exclude the user's history items from ranking (the backbones issue's protocol; RecBole's sequential full-sort, which the paper's Table 2 used, does not). Results also carry the test metrics under the other setting (`test_alt`).")


class Metrics(Frozen):
    hr5: float = Field(description="HR@5 averaged over users.")
    hr10: float = Field(description="HR@10 averaged over users.")
    ndcg5: float = Field(description="NDCG@5 averaged over users.")
    ndcg10: float = Field(description="NDCG@10 averaged over users.")
    n_users: int = Field(description="Users evaluated.")
    precision: Literal["fp32", "bf16"] | None = Field(default=None, description="The arithmetic the ranked backbone was trained in (its trainer's resolved precision); None where no backbone trainer ranked (the LM's next-item ranking). Records made before 'auto' say 'bf16' for every run: it was this field's default, never set.")
    mask_history: bool = Field(description="Whether history items were excluded from ranking.")
