"""Contract of `augment` (information augmentation): each item alone through the tuned language model."""
from __future__ import annotations

from pydantic import Field

from schemas.common import Frozen, TensorModel, Tensors


class AugmentConfig(Frozen):
    batch_size: int = Field(default=256, ge=1, description="Items per forward batch.")


class AugmentIn(TensorModel):
    sequences: Tensors = Field(description="From `data`.")
    item_embeddings: Tensors = Field(description="From `pretrain`.")
    groups: Tensors = Field(description="From `group`: cluster_map.")
    adapter: Tensors = Field(description="From `sft`.")
    heads: Tensors = Field(description="From `sft`.")
    item_text: Tensors | None = Field(default=None, description="From `text`, when the sft run read item text.")


class AugmentResult(Frozen):
    hidden_size: int = Field(description="H of the enhanced embeddings.")
    c1: float = Field(description="Fraction of items whose top-1 category equals the pre-group.")
    c2: float = Field(description="Fraction with the pre-group in the top 3 but not top 1.")
    c3: float = Field(description="Fraction of the rest.")
    seconds: float = Field(description="Wall seconds of the augmentation pass.")


class AugmentOut(TensorModel):
    result: AugmentResult
    artifacts: dict[str, Tensors] = Field(description="'enhanced': embeddings [N+1, H], category_probs [N+1, K].")
