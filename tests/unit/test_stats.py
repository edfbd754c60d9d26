"""Seed aggregation, the t-test, Table 2 formatting and the figures (valid PNGs)."""
from __future__ import annotations

import math

import pytest
import torch

from pipeline.figures import activity_bins, bin_metrics, fig4_agreement, fig5_activity
from pipeline.report import table2
from pipeline.stats import mean_std, significance, summarize, ttest_p

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(variant, seed, ndcg10, backbone="sasrec"):
    return {"backbone": backbone, "variant": variant, "seed": seed, "seconds_per_epoch": 1.0,
            "test": {"hr5": ndcg10 * 1.2, "hr10": ndcg10 * 2, "ndcg5": ndcg10 * 0.8, "ndcg10": ndcg10}}


def test_mean_std_sample():
    m, s = mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and s == pytest.approx(1.0)
    assert mean_std([5.0]) == (5.0, 0.0)


def test_ttest_matches_hand_computation():
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    # pooled sd = 1, t = -3 / sqrt(2/3) = -3.674, df = 4 -> two-sided p = 0.02131
    assert ttest_p(a, b) == pytest.approx(0.021311641128756, rel=1e-6)
    assert ttest_p([1.0], b) is None


def test_significance_against_best_other_variant():
    runs = [run("base", s, 0.040 + 0.001 * s) for s in range(3)] + \
           [run("ci", s, 0.041 + 0.001 * s) for s in range(3)] + \
           [run("tslrec", s, 0.050 + 0.001 * s) for s in range(3)]
    rows = summarize(runs)
    sig = {s["metric"]: s for s in significance(rows)}
    assert sig["ndcg10"]["vs"] == "ci"
    assert sig["ndcg10"]["diff"] == pytest.approx(0.009)
    assert sig["ndcg10"]["p"] < 0.05


def test_table2_marks_best_second_and_stars():
    runs = [run("base", s, 0.040 + 0.001 * s) for s in range(3)] + \
           [run("tslrec", s, 0.050 + 0.001 * s) for s in range(3)]
    rows = summarize(runs)
    exp = {"dataset": "toy", "summary": rows, "significance": significance(rows)}
    header, body = table2([exp])
    assert header[:3] == ["backbone", "variant", "toy HR@5"]
    base, ours = body
    assert ours[1] == "tslrec" and ours[-1] == "**0.0510 ± 0.0010***"       # mean ± std, then the star
    assert base[-1] == "<u>0.0410 ± 0.0010</u>"
    worse = summarize([run("base", s, 0.050 + 0.001 * s) for s in range(3)] + [run("tslrec", s, 0.040 + 0.001 * s) for s in range(3)])
    _, body = table2([{"dataset": "toy", "summary": worse, "significance": significance(worse)}])
    assert body[1][-1] == "<u>0.0410 ± 0.0010†</u>"                         # significantly worse: a dagger


def test_activity_bins_exact():
    lengths = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    ranks = torch.tensor([0, 20, 1, 20, 0, 0, 20, 20, 3, 3])
    bins, labels, counts = activity_bins(lengths, n_bins=5)
    assert labels == ["1-2", "3-4", "5-6", "7-8", "9-10"] and counts == [2] * 5
    groups = bin_metrics(bins, ranks, len(labels))
    assert groups["hr10"] == [0.5, 0.5, 1.0, 0.0, 1.0]
    assert groups["ndcg10"][0] == pytest.approx(0.5)
    assert groups["ndcg10"][4] == pytest.approx(1 / math.log2(5))


def test_activity_bins_never_split_a_length():
    """Equal-size chunks of the sorted users put length 3 in three groups; bins by length do not."""
    lengths = torch.tensor([3] * 7 + [4, 4, 5, 9, 12] + [3] * 3)
    bins, labels, counts = activity_bins(lengths, n_bins=5)
    assert labels == ["3-4", "5-12"] and counts == [12, 3]        # cuts at the quantile lengths 3, 3, 3, 5
    for b in range(len(labels)):
        for other in range(b + 1, len(labels)):
            assert int(lengths[bins == b].max()) < int(lengths[bins == other].min())


def test_figures_are_valid_pngs(tmp_path):
    p4 = fig4_agreement({"a": {"c1": 0.5, "c2": 0.3, "c3": 0.2}, "b": {"c1": 0.7, "c2": 0.2, "c3": 0.1}},
                        tmp_path / "f4.png")
    p5 = fig5_activity({"base": {"hr10": [(0.1, 0.01)] * 5, "ndcg10": [(0.05, 0.0)] * 5},
                        "tslrec": {"hr10": [(0.2, 0.02)] * 5, "ndcg10": [(0.1, 0.01)] * 5}},
                       ["1", "2", "3", "4", "5"], [10, 20, 30, 40, 50], "t", tmp_path / "f5.png")
    for p in (p4, p5):
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 5000
