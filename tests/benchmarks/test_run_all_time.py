"""benchmarks.run_all_time: `tslrec run all` timed from a cold cache, with each stage's seconds."""
import pytest

from benchmarks.run_all_time import stage_seconds, time_run_all
from conftest import toy

TINY = ["pretrain.trainer.epochs=2", "train.trainer.epochs=2", "sft.model=tiny-bert", "group.k=4",
        "pretrain.backbone.dim=16", "train.backbone.dim=16"]


def test_times_a_cold_run_all_and_refuses_a_warm_cache(dirs, tmp_path):
    _, data = dirs
    toy(data, users=40)
    cache = tmp_path / "cold"
    seconds, record = time_run_all("toy", 1, "cpu", TINY, cache)
    stages = stage_seconds(record)
    assert seconds > 0 and {"data", "pretrain", "group", "sft", "augment"} <= set(stages)
    assert any(k.startswith("train sasrec/tslrec/") for k in stages) and all(v >= 0 for v in stages.values())
    assert sum(stages.values()) <= seconds                                 # the parts fit in the whole
    with pytest.raises(SystemExit, match="not empty"):
        time_run_all("toy", 1, "cpu", TINY, cache)
