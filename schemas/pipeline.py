"""The whole pipeline's config: one section per stage, overridable with --set stage.field=value."""
from __future__ import annotations

from pydantic import Field

from schemas.common import Frozen
from schemas.data import DataConfig
from schemas.group import GroupConfig
from schemas.llm import AugmentConfig, SftConfig
from schemas.pretrain import PretrainConfig, TrainConfig


class PipelineConfig(Frozen):
    data: DataConfig = Field(default_factory=DataConfig, description="Dataset and its format.")
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig, description="ID backbone whose item embeddings seed the LLM stages.")
    group: GroupConfig = Field(default_factory=GroupConfig, description="k-means pre-grouping.")
    sft: SftConfig = Field(default_factory=SftConfig, description="User-level SFT of the LLM.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Per-item enhanced embeddings.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Downstream backbone and variant.")
