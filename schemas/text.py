"""Contracts of `text` (the dataset's item text) and `encode` (each item's text read by a language model,
no SFT: the text-only control table, `train.source=text`)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from schemas.common import Frozen, TensorModel, Tensors


class TextConfig(Frozen):
    """The text stage reads the file beside the dataset (`<stem>.items.tsv`); it has no settings of its own."""


class TextIn(TensorModel):
    path: Path = Field(description="The items.tsv file to read.")
    item_ids: Tensors = Field(description="From `data`: the file's own id of each internal item id.")


class TextResult(Frozen):
    columns: list[str] = Field(description="Text columns of the file, in order.")
    n_items: int = Field(description="Items of the dataset (N).")
    n_with_text: int = Field(description="Items with non-empty text.")
    n_missing: int = Field(description="Items without a row in the file (or with only empty fields): they get empty text.")
    mean_chars: dict[str, float] = Field(description="Mean characters per item of each column (over items with text).")
    source_sha256: str = Field(description="sha256 of the file's bytes.")


class TextOut(TensorModel):
    result: TextResult
    artifacts: dict[str, Tensors] = Field(description="'item_text': column names and N+1 UTF-8 strings per column (stages/core/item_text.py).")


class EncodeConfig(Frozen):
    model: str = Field(default="minilm-l6", description="Language model that reads the text: a packaged name (minilm-l6, smollm2-135m), a local HF model dir, a .gguf file, or a hub id. Use sft.model's value to compare with TSLRec's SFT of the same model.")
    item_text: Literal["title", "all"] = Field(default="title", description="'title': the column named title (the first text column when none is); 'all': every column, as 'title; name: value; ...'.")
    max_tokens: int = Field(default=64, ge=1, description="Tokens of each item's text read (the first ones).")
    pooling: Literal["mean", "last"] = Field(default="mean", description="'mean': masked mean of the last hidden states over the item's tokens (MiniLM's own sentence-embedding pooling, special tokens included; for a causal LM over its tokens); 'last': the last token's state (a causal LM's summary of the whole text).")
    normalize: bool = Field(default=True, description="L2-normalize each item's vector (all-MiniLM-L6-v2's sentence embeddings end with it).")
    batch_size: int = Field(default=256, ge=1, description="Items per forward batch.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(default="auto", description="LM weights' dtype ('auto': bf16 where the device has native bfloat16, else fp32).")


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
