"""benchmarks.run_all_time: `tslrec run all` timed from a cold cache, with each stage's seconds."""
import pytest

from benchmarks.run_all_time import stage_epochs, stage_seconds, stages_from_log, time_run_all
from conftest import toy

TINY = ["pretrain.trainer.epochs=2", "train.trainer.epochs=2", "sft.model=tiny-bert", "group.k=4",
        "pretrain.backbone.dim=16", "train.backbone.dim=16"]


def test_times_a_cold_run_all_and_refuses_a_warm_cache(dirs, tmp_path):
    _, data = dirs
    toy(data, users=40)
    cache = tmp_path / "cold"
    seconds, record, log = time_run_all("toy", 1, "cpu", TINY, cache)
    stages = stage_seconds(record)
    assert seconds > 0 and {"data", "pretrain", "group", "sft", "augment"} <= set(stages)
    assert any(k.startswith("train sasrec/tslrec/") for k in stages) and all(v >= 0 for v in stages.values())
    assert sum(stages.values()) <= seconds                                 # the parts fit in the whole
    epochs = stage_epochs(record)                                         # every training stage, with its epochs
    assert epochs["pretrain"]["epochs_run"] == 2 and epochs["sft"]["seconds_per_epoch"] > 0
    assert {k for k in stages if k.startswith("train ")} <= set(epochs)
    assert all(v["seconds_per_epoch"] > 0 for v in epochs.values())
    assert all(epochs[k]["epochs_run"] == 2 for k in epochs if k.startswith("train sasrec/tslrec/"))
    done, current = stages_from_log(log)                                  # the log names the same stages
    assert current is None and {"data", "pretrain", "sft"} <= set(done)
    with pytest.raises(SystemExit, match="not empty"):
        time_run_all("toy", 1, "cpu", TINY, cache)


def test_jobs_reaches_run_all(dirs, tmp_path):
    _, data = dirs
    toy(data, users=40)
    _, record, log = time_run_all("toy", 2, "cpu", TINY, tmp_path / "cold", jobs=2)   # the SFT's ranks: opt-in
    assert record["data_parallel"] == {"sft": 2}, log


def test_a_run_stopped_at_the_limit_is_interrupted_and_its_log_read(dirs, tmp_path):
    _, data = dirs
    toy(data, users=40)
    seconds, record, log = time_run_all("toy", 1, "cpu", TINY, tmp_path / "cold", stop_after_s=0.5)
    assert record is None and seconds >= 0.5


def test_the_stages_a_log_finished_and_the_one_it_was_in():
    log = ("stage 3 of 9: pretrain\ncomputing pretrain a3ece372537d\n"
           "stored    pretrain a3ece372537d in 283.2s, peak RSS 1052 MiB\n"
           "cache hit group c2f93da20ea4\ncomputing sft      da08201eb94d\ninterrupted\n")
    assert stages_from_log(log) == ({"pretrain": 283.2}, "sft")
