"""The `group` stage: k-means pre-grouping of the pretrained item embeddings (paper, section 4.1).

Every item 1..N gets one of K groups (its preliminary latent category); each user's preference
vector ḡ^u is the L1-normalized histogram of the groups of the user's *training* items
(`Sequences.train_part()`: never the validation or the test item). A user with an empty training
part (impossible after the data stage, which requires 3 interactions) gets the uniform
distribution, so that every row sums to 1.
"""
from __future__ import annotations

import math

import torch

from schemas.group import GroupConfig, GroupIn, GroupOut, GroupResult
from schemas.runtime import Runtime
from stages.core.preference import preference_histogram
from stages.core.sequences import Sequences

VERSION = 1
MODULES = ["stages.group", "stages.core.preference", "stages.core.sequences"]


def mean_entropy(pref: torch.Tensor) -> float:
    """Mean Shannon entropy (nats) of the rows, with 0 log 0 = 0."""
    p = pref.to(torch.float64)
    ent = -(torch.where(p > 0, p * torch.log(p.clamp(min=1e-300)), torch.zeros_like(p))).sum(1)
    return float(ent.mean()) if ent.numel() else math.nan


def kmeans(weight: torch.Tensor, k: int, seed: int, n_init: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """k-means on the item rows (no padding row): labels int64 (N,), centroids float32 (K, d), inertia."""
    from sklearn.cluster import KMeans

    x = weight.detach().to(torch.float32).cpu().numpy()
    if x.shape[0] < k:
        raise ValueError(f"cannot make K={k} groups from {x.shape[0]} items; lower group.k")
    if not torch.isfinite(weight).all():
        raise ValueError("item embeddings contain NaN or inf; cannot run k-means")
    km = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(x)
    labels = torch.from_numpy(km.labels_.astype("int64"))
    centroids = torch.from_numpy(km.cluster_centers_.astype("float32")).contiguous()
    return labels, centroids, float(km.inertia_)


def run(cfg: GroupConfig, inp: GroupIn, rt: Runtime) -> GroupOut:
    seqs = Sequences.from_tensors(inp.sequences)
    weight = inp.item_embeddings["weight"]
    if weight.shape[0] != seqs.n_items + 1:
        raise ValueError(f"item embeddings have {weight.shape[0]} rows; expected N+1 = {seqs.n_items + 1}")
    labels, centroids, inertia = kmeans(weight[1:], cfg.k, cfg.seed, cfg.n_init)
    cluster_map = torch.cat([torch.tensor([-1], dtype=torch.int64), labels])  # row 0 = padding
    pref = preference_histogram(seqs.train_part(), cluster_map, cfg.k)
    result = GroupResult(
        k=cfg.k,
        group_sizes=torch.bincount(labels, minlength=cfg.k).tolist(),
        inertia=inertia,
        mean_entropy=mean_entropy(pref),
    )
    groups = {"cluster_map": cluster_map.contiguous(), "centroids": centroids, "user_pref": pref.contiguous()}
    return GroupOut(result=result, artifacts={"groups": groups})
