"""Contracts of `pretrain` (ID backbone -> item embeddings) and `train` (Base / CI / TSLRec)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.backbone import BackboneConfig, Metrics, TrainerConfig
from schemas.common import Frozen, TensorModel, Tensors


class PretrainConfig(Frozen):
    backbone: BackboneConfig = Field(default_factory=BackboneConfig, description="Backbone architecture.")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description="Optimisation and early stopping.")


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


class PretrainIn(TensorModel):
    sequences: Tensors = Field(description="From `data`: items, offsets.")


class PretrainOut(TensorModel):
    result: TrainResult
    artifacts: dict[str, Tensors] = Field(description="'item_embeddings': weight [N+1, d]; 'backbone': state dict; 'ranks': valid/test rank per user.")


Variant = Literal["base", "ci", "tslrec"]


class TrainConfig(Frozen):
    variant: Variant = Field(default="base", description="'base' random item embeddings; 'ci' + learnable pre-group embedding; 'tslrec' gate fusion with the enhanced embeddings.")
    fusion: Literal["gate"] = Field(default="gate", description="How enhanced embeddings are fused (paper: gate).")
    enhanced_norm: Literal["standardize", "none"] = Field(default="standardize", description="Before fusion, center the enhanced embeddings over items and scale them to unit std ('standardize'), or use them raw ('none'). Raw LLM hidden states of one-item prompts share a large prompt component that drowns the per-item signal.")
    backbone: BackboneConfig = Field(default_factory=BackboneConfig, description="Backbone architecture.")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description="Optimisation and early stopping.")


class TrainIn(TensorModel):
    sequences: Tensors = Field(description="From `data`.")
    groups: Tensors | None = Field(default=None, description="From `group` (cluster_map), needed by 'ci'.")
    enhanced: Tensors | None = Field(default=None, description="From `augment` (embeddings), needed by 'tslrec'.")


class TrainOut(TensorModel):
    result: TrainResult
    artifacts: dict[str, Tensors] = Field(description="'backbone': state dict; 'ranks': valid/test rank per user.")
