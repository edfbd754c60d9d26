"""Contract of `encode`: each item's text read by a language model with no SFT (the text-only control table,
`train.source=text`)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.common import Frozen, TensorModel, Tensors
from schemas.names import AUTO, LM_PRECISIONS


class EncodeConfig(Frozen):
    model: str = Field(default="minilm-l6", description="Language model that reads the text: a packaged name (minilm-l6, smollm2-135m), a local HF model dir, a .gguf file, or a hub id. Use sft.model's value to compare with TSLRec's SFT of the same model.")
    item_text: Literal["title", "all"] = Field(default="title", description="'title': the column named title (the first text column when none is); 'all': every column, as 'title; name: value; ...'.")
    max_tokens: int = Field(default=64, ge=1, description="Tokens of each item's text read (the first ones).")
    pooling: Literal["mean", "last"] = Field(default="mean", description="'mean': masked mean of the last hidden states over the item's tokens (MiniLM's own sentence-embedding pooling, special tokens included; for a causal LM over its tokens); 'last': the last token's state (a causal LM's summary of the whole text).")
    normalize: bool = Field(default=True, description="L2-normalize each item's vector (all-MiniLM-L6-v2's sentence embeddings end with it).")
    batch_size: int = Field(default=256, ge=1, description="Items per forward batch.")
    precision: Literal[(AUTO, *LM_PRECISIONS)] = Field(default=AUTO, description="LM weights' dtype ('auto': bf16 where the device has native bfloat16, else fp32).")


class EncodeIn(TensorModel):
    item_text: Tensors = Field(description="From `text`.")


class EncodeResult(Frozen):
    model: str = Field(description="Resolved model name.")
    hidden_size: int = Field(description="H of the table.")
    n_empty: int = Field(description="Items without text: their row is zero.")
    mean_tokens: float = Field(description="Mean tokens read per item with text.")
    seconds: float = Field(description="Wall seconds of the encoding pass (model loading excluded).")


class EncodeOut(TensorModel):
    result: EncodeResult
    artifacts: dict[str, Tensors] = Field(description="'text_table': embeddings [N+1, H], row 0 padding (zero).")
