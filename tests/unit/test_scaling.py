"""Scaling: linear synthetic data, per-stage peak memory in run records, no users x items matrix
(the scaling benchmark's own tests: tests/benchmarks/test_scaling_benchmark.py)."""
from __future__ import annotations

import json
import time

import pytest
import torch

from pipeline.memory import track_peak
from pipeline.synthetic import SyntheticConfig, category_tensor, distinct_choices, synthetic_tensors
from stages.core import evaluate



def test_synthetic_is_vectorised_and_linear():
    small, big = SyntheticConfig(users=20_000, items=2_000), SyntheticConfig(users=200_000, items=20_000)
    synthetic_tensors(small)                                  # warm-up
    # CPU seconds, not wall: a shared machine's other jobs must not fail this (they did, at 2x load)
    t0 = time.process_time()
    synthetic_tensors(small)
    t_small = time.process_time() - t0
    t0 = time.process_time()
    items, offsets = synthetic_tensors(big)
    t_big = time.process_time() - t0
    assert offsets.numel() == 200_001 and items.numel() == int(offsets[-1])
    assert t_big < 5.0                                        # the per-item Python loop took ~8 s here
    assert t_big < 40 * max(t_small, 0.01)                    # 10x the users: ~10x the time, never 100x


def test_synthetic_walks_stay_in_their_preferred_categories():
    cfg = SyntheticConfig(users=500, items=300, categories=30, prefs_per_user=2, p_follow=0.8)
    items, offsets = synthetic_tensors(cfg)
    cats = category_tensor(cfg)
    assert torch.bincount(cats[1:]).tolist() == [10] * 30               # balanced categories
    for u in range(cfg.users):
        assert cats[items[offsets[u]:offsets[u + 1]]].unique().numel() <= 2
    lengths = offsets[1:] - offsets[:-1]
    assert lengths.min() >= cfg.min_len and lengths.max() <= cfg.max_len
    # consecutive items of one category that follow its list: ~p_follow of the steps (plus lucky jumps)
    order = torch.argsort(cats[1:], stable=True) + 1
    rank = torch.empty_like(order)
    rank[order - 1] = torch.arange(order.numel())
    a, b = items[:-1], items[1:]
    inside = torch.ones_like(a, dtype=torch.bool)
    inside[offsets[1:-1] - 1] = False                                    # pairs across two users
    same = (cats[a] == cats[b]) & inside
    nxt = same & (((rank[b - 1] - rank[a - 1]) % 300 == 1) | ((rank[b - 1] - rank[a - 1]) == -9))
    assert 0.75 < float(nxt.sum()) / float(inside.sum()) < 0.9


def test_distinct_choices_are_distinct_and_cover_the_range():
    out = distinct_choices(10_000, 3, 3, torch.Generator().manual_seed(0))
    assert (out.sort(1).values == torch.tensor([0, 1, 2])).all()


def test_track_peak_is_the_stages_own_peak():
    with track_peak("cpu") as first:
        block = torch.ones(50_000_000, dtype=torch.int32)                 # ~190 MiB, touched
        del block
    with track_peak("cpu") as second:
        pass
    assert first.rss_exact and second.rss_exact
    assert first.rss_mb - second.rss_mb > 150 and second.cuda_mb is None


def test_every_run_record_holds_its_peak_memory(cli):
    assert cli("data", "synth", "--name", "toy", "--users", "30", "--items", "20").code == 0
    rec = json.loads(cli("--threads", "1", "run", "pretrain", "-d", "toy", "--set", "pretrain.trainer.epochs=1",
                         "--set", "pretrain.backbone.dim=8", "--json").out)
    assert rec["peak_rss_mb"] > 50 and rec["peak_rss_exact"] is True and rec["peak_cuda_mb"] is None
    again = json.loads(cli("run", "pretrain", "-d", "toy", "--set", "pretrain.trainer.epochs=1",
                           "--set", "pretrain.backbone.dim=8", "--json").out)
    assert again["cached"] and again["peak_rss_mb"] == rec["peak_rss_mb"]    # the computing run's figure


@pytest.mark.parametrize("where", ["backbone", "e4srec"])
def test_ranking_scores_at_most_a_batch_of_users_at_once(monkeypatch, where):
    """Full ranking never holds a users x items score matrix: each scoring call gets one batch."""
    from tests.conftest import cycle_dataset

    seen = []
    real = evaluate.ranks_from_scores

    def spy(scores, targets, history=None):
        seen.append(scores.shape)
        return real(scores, targets, history)

    seqs = cycle_dataset(users=50, n_items=30)
    if where == "backbone":
        from schemas.backbone import BackboneConfig
        from stages.backbones import build
        from stages.backbones.embedding import ItemEmbedding

        monkeypatch.setattr(evaluate, "ranks_from_scores", spy)
        model = build(BackboneConfig(dim=8, max_len=10), ItemEmbedding(30, 8))
        ranks = evaluate.rank_users(model, seqs.train_part(), seqs.valid_targets(), max_len=10, batch_size=16)
    else:
        from schemas.sft import SftConfig
        from stages import sft
        from stages.lm import e4srec

        monkeypatch.setattr(e4srec, "ranks_from_scores", spy)
        c = SftConfig(model="tiny-llama", task="next_item", num_layers=1, eval_batch_size=16, max_items=5)
        task, *_, n_out = sft.prepare(c, seqs, torch.randn(31, 8), {})
        from schemas.runtime import Runtime
        model = sft.make_model(c, task, torch.randn(31, 8), n_out, Runtime(progress=False, offline=True))
        ranks, _ = e4srec.user_ranks(model, seqs.train_part(), seqs.valid_targets(), max_items=5, batch_size=16)
    assert ranks.shape == (50,) and seen
    assert all(rows <= 16 and cols == 31 for rows, cols in seen)
    assert sum(rows for rows, _ in seen) == 50
