"""Contract of `pretrain`: an ID backbone trained on the training part of every sequence, its item table kept."""
from __future__ import annotations

from pydantic import Field

from schemas.backbone import BackboneConfig, TrainerConfig, TrainResult
from schemas.common import Frozen, TensorModel, Tensors


class PretrainConfig(Frozen):
    backbone: BackboneConfig = Field(default_factory=BackboneConfig, description="Backbone architecture.")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description="Optimisation and early stopping.")


class PretrainIn(TensorModel):
    sequences: Tensors = Field(description="From `data`: items, offsets.")


class PretrainOut(TensorModel):
    result: TrainResult
    artifacts: dict[str, Tensors] = Field(description="'item_embeddings': weight [N+1, d]; 'backbone': state dict; 'ranks': valid/test rank per user.")
