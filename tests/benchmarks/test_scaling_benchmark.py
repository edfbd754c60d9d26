"""benchmarks.scaling: its arithmetic (slopes, predictions, the figure), and one tiny run (`slow`: the
benchmark itself runs for hours)."""
from __future__ import annotations

import json

import pytest

from benchmarks import scaling


def test_scaling_slope_prediction_and_figure(tmp_path):
    assert scaling.slope([1e3, 1e4, 1e5], [2.0, 20.0, 200.0]) == pytest.approx(1.0)
    assert scaling.slope([1e3, 1e4], [1.0, 100.0]) == pytest.approx(2.0)
    assert scaling.slope([1e3], [1.0]) is None
    done = [{"users": 1000, "stages": {"sft": {"seconds": 10.0}}}, {"users": 10_000, "stages": {"sft": {"seconds": 1000.0}}}]
    assert scaling.predicted_seconds("sft", 100_000, done) == pytest.approx(100_000.0)      # quadratic so far
    sub = [{"users": 1000, "stages": {"sft": {"seconds": 10.0}}}, {"users": 10_000, "stages": {"sft": {"seconds": 20.0}}}]
    assert scaling.predicted_seconds("sft", 100_000, sub) == pytest.approx(200.0)           # never below linear
    assert scaling.predicted_seconds("train", 100_000, done) is None
    rows = [{"users": u, "stages": {s: {"seconds": u / 100, "peak_rss_mb": 300.0, "extrapolated": u > 1000}
                                    for s in scaling.STAGES}} for u in (1000, 3000)]
    report = {"sizes": rows, "exponents": scaling.exponents(rows), "model": "tiny", "machine": {"cpu": "x"}}
    assert report["exponents"]["sft"]["seconds"] == pytest.approx(1.0)
    scaling.figure(report, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 10_000


@pytest.mark.slow
def test_scaling_benchmark_end_to_end_on_tiny_sizes(tmp_path):
    whole, sampled = tmp_path / "whole.json", tmp_path / "sampled.json"
    common = ["--model", "tiny-llama", "--steps", "2", "--sft-batch-size", "16"]
    assert scaling.main(["--users", "300", "--budget-s", "1e9", *common, "--out", str(whole)]) == 0
    assert scaling.main(["--users", "300,600", "--sample-all", *common, "--out", str(sampled)]) == 0
    (one,) = json.loads(whole.read_text())["sizes"]
    assert not any(s["extrapolated"] for s in one["stages"].values())
    assert all(one["stages"][s]["estimate_s"] > 0 for s in scaling.SAMPLED)     # the estimate next to the truth
    report = json.loads(sampled.read_text())
    assert [r["users"] for r in report["sizes"]] == [300, 600]
    for row in report["sizes"]:
        assert all(row["stages"][s]["extrapolated"] == (s in scaling.SAMPLED) for s in scaling.STAGES)
        assert all(s["peak_rss_mb"] > 50 for s in row["stages"].values())
    assert (tmp_path / "sampled.png").stat().st_size > 10_000
