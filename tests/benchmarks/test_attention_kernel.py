"""benchmarks.attention_kernel: each kernel trains a step and reports its seconds and peak memory."""
import pytest

from benchmarks.attention_kernel import KERNELS, probe


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_probe_runs_a_training_step_under_each_kernel(name):
    kernel, dropout = KERNELS[name]
    row = probe(kernel, dropout, batch=2, length=16, threads=1, model="tiny-bert")
    assert len(row["step_seconds"]) == 2 and all(s > 0 for s in row["step_seconds"])
    assert row["peak_rss_mb"] >= row["rss_before_steps_mb"] > 0


def test_summary_takes_the_median_step_and_compares_at_the_same_length():
    from benchmarks.attention_kernel import summarize

    rows = summarize([{"kernel": "sdpa+dropout", "length": 8, "step_seconds": [4.0, 2.0], "peak_rss_mb": 200.0},
                      {"kernel": "eager+dropout", "length": 8, "step_seconds": [1.0, 2.0], "peak_rss_mb": 100.0}])
    assert [r["step_seconds_median"] for r in rows] == [3.0, 1.5]
    assert rows[1]["seconds_ratio_vs_sdpa_dropout"] == 0.5 and rows[1]["rss_ratio_vs_sdpa_dropout"] == 0.5


def test_without_the_sdpa_dropout_row_the_ratios_are_none():
    from benchmarks.attention_kernel import summarize

    rows = summarize([{"kernel": "eager, no dropout", "length": 8, "step_seconds": [1.0, 3.0], "peak_rss_mb": 100.0}])
    assert rows[0]["step_seconds_median"] == 2.0 and rows[0]["seconds_ratio_vs_sdpa_dropout"] is None


def test_a_recorded_command_quotes_arguments_with_spaces(monkeypatch):
    import shlex
    import sys

    from benchmarks.common import command

    argv = ["--kernels", "sdpa, no dropout", "eager+dropout", "--threads", "1"]
    monkeypatch.setattr(sys, "argv", ["attention_kernel.py", *argv])
    recorded = command()
    assert shlex.split(recorded)[2:] == argv            # `python attention_kernel.py ARGS` splits back to ARGS
