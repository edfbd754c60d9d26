"""Contract of `text`: the dataset's item text (`<stem>.items.tsv`) as an artifact."""
from __future__ import annotations

from pathlib import Path

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
