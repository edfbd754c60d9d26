"""Contracts shared by `pretrain` and `train`: backbone architecture, trainer, evaluation, result."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.common import SEED_MAX, Frozen
from schemas.names import AUTO, BACKBONE_PRECISIONS, BACKBONES

BackboneName = Literal[BACKBONES]
Precision = Literal[(AUTO, *BACKBONE_PRECISIONS)]


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
    precision: Precision = Field(default=AUTO, description="Arithmetic of the full-softmax loss (scoring matmuls and softmax): 'bf16' runs them in bfloat16 with float32 row sums, loss and gradient accumulation (fp32 master weights), and autocasts the backbone to bfloat16. 'auto': bf16 where the device has native bfloat16 (AVX512-BF16 or AMX, a bf16 GPU), else fp32, since emulated bfloat16 is many times slower than fp32; the record names the one that ran. Speed and quality of each: docs/method-choices.md. Evaluation always scores in float32 (bfloat16 scores would create ties).")
    mask_history: bool = Field(default=True, description="Exclude the user's history items from ranking (the backbones issue's protocol; RecBole's sequential full-sort, which the paper's Table 2 used, does not). Results also carry the test metrics under the other setting (`test_alt`).")


class Metrics(Frozen):
    hr5: float = Field(description="HR@5 averaged over users.")
    hr10: float = Field(description="HR@10 averaged over users.")
    ndcg5: float = Field(description="NDCG@5 averaged over users.")
    ndcg10: float = Field(description="NDCG@10 averaged over users.")
    n_users: int = Field(description="Users evaluated.")
    precision: Literal[BACKBONE_PRECISIONS] | None = Field(default=None, description="The arithmetic the ranked backbone was trained in (its trainer's resolved precision); None where no backbone trainer ranked (the LM's next-item ranking). Records made before 'auto' say 'bf16' for every run: it was this field's default, never set.")
    mask_history: bool = Field(description="Whether history items were excluded from ranking.")


class TrainResult(Frozen):
    backbone: str = Field(description="Backbone name.")
    variant: str = Field(description="'pretrain', 'base', 'ci' or 'tslrec'.")
    seed: int = Field(description="Seed used.")
    valid: Metrics = Field(description="Validation metrics of the best epoch.")
    test: Metrics = Field(description="Test metrics of the best epoch's weights.")
    test_alt: Metrics | None = Field(default=None, description="The same weights' test metrics under the other history-masking setting (for comparison with papers that use it).")
    best_epoch: int = Field(description="Epoch (1-based) with the best validation NDCG@10.")
    epochs_run: int = Field(description="Epochs trained before early stopping.")
    seconds_per_epoch: float = Field(description="Median training seconds per epoch.")
    seconds_per_eval: float = Field(description="Median seconds per full-ranking evaluation.")
    train_seconds: float = Field(description="Total wall time of training and evaluation.")
    fusion: str | None = Field(default=None, description="'tslrec': the fusion used (train.fusion).")
    source: str | None = Field(default=None, description="'tslrec': the item table fed to the fusion (train.source).")
    ensemble_weight: float | None = Field(default=None, description="'ensemble': weight of the second member's log-probabilities, chosen on validation NDCG@10.")
