"""The whole pipeline's config: one section per stage, overridable with --set stage.field=value."""
from __future__ import annotations

from pydantic import Field

from schemas.augment import AugmentConfig
from schemas.common import Frozen
from schemas.data import DataConfig
from schemas.encode import EncodeConfig
from schemas.group import GroupConfig
from schemas.llamarec import LlamaRecConfig
from schemas.pretrain import PretrainConfig
from schemas.sft import SftConfig
from schemas.text import TextConfig
from schemas.train import TrainConfig


class PipelineConfig(Frozen):
    data: DataConfig = Field(default_factory=DataConfig, description="Dataset and its format.")
    text: TextConfig = Field(default_factory=TextConfig, description="The dataset's item text (no settings).")
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig, description="ID backbone whose item embeddings seed the LLM stages.")
    group: GroupConfig = Field(default_factory=GroupConfig, description="k-means pre-grouping.")
    sft: SftConfig = Field(default_factory=SftConfig, description="User-level SFT of the LLM.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Per-item enhanced embeddings.")
    encode: EncodeConfig = Field(default_factory=EncodeConfig, description="Item text read by a language model with no SFT (train.source=text).")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Downstream backbone and variant.")
    llamarec: LlamaRecConfig = Field(default_factory=LlamaRecConfig, description="LlamaRec baseline: the pretrain SASRec's candidates re-ranked by a LoRA language model.")
