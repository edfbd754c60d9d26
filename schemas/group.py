"""Contracts of `group`: k-means pre-grouping and user preference distributions."""
from __future__ import annotations

from pydantic import Field

from schemas.common import SEED_MAX, Frozen, TensorModel, Tensors


class GroupConfig(Frozen):
    k: int = Field(default=16, ge=2, description="Number of latent categories K.")
    seed: int = Field(default=42, ge=0, le=SEED_MAX, description="k-means seed.")
    n_init: int = Field(default=4, ge=1, description="k-means restarts.")


class GroupIn(TensorModel):
    sequences: Tensors = Field(description="From `data`.")
    item_embeddings: Tensors = Field(description="From `pretrain`: weight [N+1, d].")


class GroupResult(Frozen):
    k: int = Field(description="Number of groups.")
    group_sizes: list[int] = Field(description="Items per group.")
    inertia: float = Field(description="k-means within-cluster sum of squares.")
    mean_entropy: float = Field(description="Mean entropy (nats) of the users' preference vectors.")


class GroupOut(TensorModel):
    result: GroupResult
    artifacts: dict[str, Tensors] = Field(description="'groups': cluster_map int64 [N+1] (pad -1), centroids [K, d], user_pref [M, K].")
