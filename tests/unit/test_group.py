"""The group stage: k-means pre-grouping and the users' preference histograms (training items only)."""
from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.group import GroupConfig, GroupIn
from schemas.runtime import Runtime
from stages import group
from stages.core.preference import group_counts, preference_histogram
from stages.core.sequences import Sequences
from stages.group import mean_entropy


@st.composite
def dataset(draw, min_len: int = 3):
    """(Sequences, K, cluster_map [N+1] with -1 at 0)."""
    n = draw(st.integers(2, 25))
    k = draw(st.integers(2, 6))
    seqs = draw(st.lists(st.lists(st.integers(1, n), min_size=min_len, max_size=12), min_size=1, max_size=15))
    labels = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    lengths = torch.tensor([len(s) for s in seqs])
    offsets = torch.zeros(len(seqs) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    items = torch.tensor([i for s in seqs for i in s], dtype=torch.int32)
    return Sequences(items, offsets, n), k, torch.tensor([-1, *labels], dtype=torch.int64)


def recount(train: Sequences, cluster_map: torch.Tensor, k: int) -> list[list[int]]:
    out = []
    for u in range(train.n_users):
        row = [0] * k
        for item in train.user(u).tolist():
            row[int(cluster_map[item])] += 1
        out.append(row)
    return out


@settings(max_examples=60, deadline=None)
@given(dataset())
def test_rows_are_distributions_and_match_a_direct_recount(data):
    seqs, k, cmap = data
    train = seqs.train_part()
    pref = preference_histogram(train, cmap, k)
    assert pref.shape == (seqs.n_users, k) and pref.dtype == torch.float32
    assert bool((pref >= 0).all())
    assert torch.allclose(pref.sum(1), torch.ones(seqs.n_users), atol=1e-6)
    counts = recount(train, cmap, k)
    assert group_counts(train, cmap, k).tolist() == counts
    expected = torch.tensor([[c / sum(row) for c in row] for row in counts], dtype=torch.float32)
    assert torch.allclose(pref, expected, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(dataset(), st.randoms(use_true_random=False))
def test_relabelling_groups_permutes_the_columns(data, rnd):
    seqs, k, cmap = data
    perm = list(range(k))
    rnd.shuffle(perm)
    perm_t = torch.tensor(perm)
    relabelled = torch.where(cmap >= 0, perm_t[cmap.clamp(min=0)], cmap)
    a = preference_histogram(seqs.train_part(), cmap, k)
    b = preference_histogram(seqs.train_part(), relabelled, k)
    assert torch.equal(b[:, perm_t], a)


@settings(max_examples=40, deadline=None)
@given(dataset())
def test_validation_and_test_items_never_count(data):
    seqs, k, cmap = data
    # A sentinel item with its own group replaces every user's validation and test item.
    sentinel = seqs.n_items + 1
    items = seqs.items.clone()
    items[seqs.offsets[1:] - 1] = sentinel
    items[seqs.offsets[1:] - 2] = sentinel
    seqs2 = Sequences(items, seqs.offsets, sentinel)
    cmap2 = torch.cat([cmap, torch.tensor([k])])
    pref = preference_histogram(seqs2.train_part(), cmap2, k + 1)
    assert bool((pref[:, k] == 0).all())
    assert torch.allclose(pref[:, :k], preference_histogram(seqs.train_part(), cmap, k))


def test_empty_training_part_is_uniform():
    seqs = Sequences(torch.tensor([1, 2, 1, 2, 3], dtype=torch.int32), torch.tensor([0, 2, 5]), 3)
    pref = preference_histogram(seqs.train_part(), torch.tensor([-1, 0, 1, 2]), 3)
    assert torch.allclose(pref[0], torch.full((3,), 1 / 3))
    assert pref[1].tolist() == [1.0, 0.0, 0.0]


def test_mean_entropy():
    assert math.isclose(mean_entropy(torch.full((2, 4), 0.25)), math.log(4), rel_tol=1e-9)
    assert mean_entropy(torch.tensor([[1.0, 0.0, 0.0]])) == 0.0


def _stage_input(n_users: int = 30, n_items: int = 40, d: int = 6, seed: int = 0) -> GroupIn:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 9, (n_users,), generator=g)
    offsets = torch.zeros(n_users + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    items = torch.randint(1, n_items + 1, (int(offsets[-1]),), generator=g, dtype=torch.int32)
    weight = torch.randn(n_items + 1, d, generator=g)
    weight[0] = 0
    return GroupIn(sequences=Sequences(items, offsets, n_items).to_tensors(), item_embeddings={"weight": weight})


@settings(max_examples=8, deadline=None)
@given(st.integers(2, 8), st.integers(0, 3))
def test_stage_assigns_every_item_to_exactly_one_group(k, seed):
    inp = _stage_input(seed=seed)
    out = group.run(GroupConfig(k=k, seed=seed, n_init=1), inp, Runtime(progress=False))
    arts = out.artifacts["groups"]
    cmap, cent, pref = arts["cluster_map"], arts["centroids"], arts["user_pref"]
    n = inp.item_embeddings["weight"].shape[0] - 1
    assert cmap.dtype == torch.int64 and cmap.shape == (n + 1,) and int(cmap[0]) == -1
    assert bool(((cmap[1:] >= 0) & (cmap[1:] < k)).all())
    assert cent.shape == (k, 6) and cent.dtype == torch.float32
    assert pref.shape == (30, k) and pref.dtype == torch.float32
    assert out.result.k == k and sum(out.result.group_sizes) == n
    assert out.result.group_sizes == torch.bincount(cmap[1:], minlength=k).tolist()
    assert out.result.inertia >= 0 and 0 <= out.result.mean_entropy <= math.log(k) + 1e-9
    assert all(t.is_contiguous() for t in arts.values())
    seqs = Sequences.from_tensors(inp.sequences)
    assert torch.allclose(pref, preference_histogram(seqs.train_part(), cmap, k))


def test_stage_is_deterministic_and_checks_shapes():
    inp = _stage_input()
    cfg = GroupConfig(k=4, seed=7, n_init=2)
    a = group.run(cfg, inp, Runtime(progress=False)).artifacts["groups"]
    b = group.run(cfg, inp, Runtime(progress=False)).artifacts["groups"]
    assert all(torch.equal(a[name], b[name]) for name in a)
    bad = GroupIn(sequences=inp.sequences, item_embeddings={"weight": inp.item_embeddings["weight"][:-1]})
    try:
        group.run(cfg, bad, Runtime(progress=False))
    except ValueError as e:
        assert "N+1" in str(e)
    else:
        raise AssertionError("wrong row count must be an error")
