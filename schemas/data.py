"""Contracts of the `data` stage: raw interaction file -> CSR sequences."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from schemas.common import Frozen, TensorModel, Tensors

Format = Literal["auto", "lines", "pairs", "inter"]


class DataConfig(Frozen):
    dataset: str = Field(default="beauty", description="Dataset name (beauty, ml-1m, yelp, synthetic, or one imported into the data dir).")
    format: Format = Field(default="auto", description="File format: 'lines' (user item item ...), 'pairs' (user item per line, in time order), 'inter' (RecBole atomic file, ordered by timestamp), or 'auto' (from the extension and first line).")
    min_length: int = Field(default=3, ge=3, description="Users with fewer interactions are an error (leave-one-out needs train, valid and test items).")


class DataIn(TensorModel):
    path: Path = Field(description="The raw file to read.")


class DataResult(Frozen):
    dataset: str = Field(description="Dataset name.")
    n_users: int = Field(description="Number of users (M).")
    n_items: int = Field(description="Number of items (N); ids run 1..N, 0 is padding.")
    n_interactions: int = Field(description="Total number of interactions.")
    avg_length: float = Field(description="Mean sequence length.")
    density: float = Field(description="n_interactions / (n_users * n_items).")
    min_length: int = Field(description="Shortest sequence.")
    max_length: int = Field(description="Longest sequence.")
    source_sha256: str = Field(description="sha256 of the raw file's bytes.")


class DataOut(TensorModel):
    result: DataResult
    artifacts: dict[str, Tensors] = Field(description="'sequences': items int32 [nnz], offsets int64 [M+1].")
