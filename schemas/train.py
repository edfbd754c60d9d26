"""Contract of `train`: a downstream backbone, Base / CI / TSLRec (a fusion of a frozen item table)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.backbone import BackboneConfig, TrainerConfig, TrainResult
from schemas.common import Frozen, TensorModel, Tensors
from schemas.names import ENSEMBLE_MEMBERS, FUSIONS, SOURCES, VARIANTS


Variant = Literal[VARIANTS]
Fusion = Literal[FUSIONS]
Member = Literal[ENSEMBLE_MEMBERS]
Source = Literal[SOURCES]


class TrainConfig(Frozen):
    variant: Variant = Field(default="base", description="'base' random item embeddings; 'ci' + learnable pre-group embedding; 'tslrec' fusion (train.fusion) of a frozen item table (train.source) with learnable ID embeddings.")
    fusion: Fusion = Field(default="gate", description="'tslrec' only. How the frozen table meets the ID embeddings (stages/backbones/fusion.py): 'gate' the paper's sigmoid gate; 'add' e_id + W e_llm; 'init' ID table initialised from a PCA of e_llm, then trained freely; 'dual' LLM-ESR's ID view and adapted frozen view through the shared backbone; 'nullspace' AlphaFuse's ID embeddings in the null space of the frozen semantic subspace; 'ensemble' late fusion of a base model's and a second model's scores (train.ensemble_member), mixed with a weight chosen on validation NDCG@10.")
    source: Source = Field(default="enhanced", description="'tslrec' only. The frozen item table: 'enhanced' (from `augment`), 'text' (from `encode`: each item's text read by the language model with no SFT, the control that separates what the LM already knows from what TSLRec's SFT teaches it), 'pretrain' (the pretrain backbone's own item table, a control), 'random' (a fixed seeded Gaussian table, a control), 'none' (fusion 'ensemble' only: its second member is another base model, with seed + 1000, the control of the ensemble).")
    ensemble_member: Member = Field(default="gate", description="'ensemble': the fusion of the second member, trained on train.source ('adapter': the frozen table through an MLP adapter alone, no ID embeddings).")
    random_dim: int = Field(default=384, ge=1, description="Width H of the 'random' source table (384 = MiniLM's hidden size, so the control has the enhanced table's shape).")
    init_whiten: bool = Field(default=False, description="'init' and 'dual': whiten the PCA components (unit variance each) before scaling the ID table to std 0.02; otherwise keep their relative variances.")
    semantic_share: float = Field(default=0.5, gt=0.0, lt=1.0, description="'nullspace': share of the d dimensions held by the frozen semantic subspace (the rest hold the learnable ID embeddings).")
    enhanced_norm: Literal["standardize", "none"] = Field(default="standardize", description="Before fusion, center the frozen table over items and scale it to unit std ('standardize'), or use it raw ('none'). Raw LLM hidden states of one-item prompts share a large prompt component that drowns the per-item signal.")
    backbone: BackboneConfig = Field(default_factory=BackboneConfig, description="Backbone architecture.")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description="Optimisation and early stopping.")

    @model_validator(mode="after")
    def _fusion_fits_variant(self) -> "TrainConfig":
        # A fusion asked of a base or ci run would be silently ignored: refuse it instead.
        if self.variant != "tslrec" and (self.fusion, self.source) != ("gate", "enhanced"):
            raise ValueError(f"train.fusion and train.source apply to train.variant='tslrec' only (got '{self.variant}')")
        if self.source == "none" and self.fusion != "ensemble":
            raise ValueError("train.source='none' is only for train.fusion='ensemble' (its base + base control)")
        return self


# Each train.source that an upstream stage makes: (the TrainIn field that carries it, the tensor holding the
# (N+1, H) table, that stage). 'random' is made by `train` itself; 'none' has no table.
SOURCE_INPUTS: dict[str, tuple[str, str, str]] = {"enhanced": ("enhanced", "embeddings", "augment"),
                                                  "text": ("text_table", "embeddings", "encode"),
                                                  "pretrain": ("item_embeddings", "weight", "pretrain")}


class TrainIn(TensorModel):
    sequences: Tensors = Field(description="From `data`.")
    groups: Tensors | None = Field(default=None, description="From `group` (cluster_map), needed by 'ci'.")
    enhanced: Tensors | None = Field(default=None, description="From `augment` (embeddings), needed by 'tslrec' with train.source='enhanced'.")
    item_embeddings: Tensors | None = Field(default=None, description="From `pretrain` (weight), needed by 'tslrec' with train.source='pretrain'.")
    text_table: Tensors | None = Field(default=None, description="From `encode` (embeddings), needed by 'tslrec' with train.source='text'.")


class TrainOut(TensorModel):
    result: TrainResult
    artifacts: dict[str, Tensors] = Field(description="'backbone': state dict; 'ranks': valid/test rank per user.")
