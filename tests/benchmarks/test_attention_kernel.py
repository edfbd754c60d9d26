"""benchmarks.attention_kernel: each kernel trains a step and reports its seconds and peak memory."""
import pytest

from benchmarks.attention_kernel import KERNELS, probe


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_probe_runs_a_training_step_under_each_kernel(name):
    kernel, dropout = KERNELS[name]
    row = probe(kernel, dropout, batch=2, length=16, threads=1, model="tiny-bert")
    assert len(row["step_seconds"]) == 2 and all(s > 0 for s in row["step_seconds"])
    assert row["peak_rss_mb"] >= row["rss_before_steps_mb"] > 0
