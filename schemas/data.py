"""Contracts of the `data` stage: raw interaction file -> CSR sequences."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from schemas.common import Frozen, TensorModel, Tensors

Format = Literal["auto", "lines", "pairs", "inter"]

# A dataset name becomes a folder and file name under the data dir: never a path.
DATASET_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def check_dataset_name(name: str) -> str:
    """The name itself if it is a valid dataset name, else ValueError saying what is allowed."""
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise ValueError(f"dataset name {name!r} is not allowed: use 1-100 letters, digits, '-', '_' "
                         f"or '.' (not first); never a path")
    return name


class DataConfig(Frozen):
    dataset: str = Field(default="beauty", description="Dataset name (beauty, ml-1m, yelp, synthetic, or one imported into the data dir).")
    format: Format = Field(default="auto", description="File format: 'lines' (user item item ...), 'pairs' (user item per line, in time order), 'inter' (RecBole atomic file, ordered by timestamp; in file order when it has no timestamp column), or 'auto' (from the extension and first line).")
    min_length: int = Field(default=3, ge=3, description="Users with fewer interactions are an error (leave-one-out needs train, valid and test items).")


    @field_validator("dataset")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        return check_dataset_name(v)


class DataIn(TensorModel):
    path: Path = Field(description="The raw file to read.")


class DataResult(Frozen):
    dataset: str = Field(description="Dataset name.")
    n_users: int = Field(description="Number of users (M).")
    n_items: int = Field(description="Number of distinct items (N); internal ids run 1..N, 0 is padding.")
    n_interactions: int = Field(description="Total number of interactions.")
    avg_length: float = Field(description="Mean sequence length.")
    density: float = Field(description="n_interactions / (n_users * n_items).")
    min_length: int = Field(description="Shortest sequence.")
    max_length: int = Field(description="Longest sequence.")
    source_sha256: str = Field(description="sha256 of the raw file's bytes.")


class DataOut(TensorModel):
    result: DataResult
    artifacts: dict[str, Tensors] = Field(description="'sequences': items int32 [nnz] (internal ids 1..N), offsets int64 [M+1]; 'user_ids', 'item_ids': the file's own id of each internal id, as UTF-8 bytes (utf8 uint8) and offsets int64 [M+1] / [N+1] (see stages/core/idmap.py).")
