"""Issue 28, numbers, errors and inputs: non-finite and out-of-range numbers (3), errors a user can act
on (4), odd inputs (6). Each test failed on the code before its fix. Records, checkpoints and gc (1, 2,
5) are in test_reliability_trust.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import toy

SEED_MAX = 2**32 - 1          # what scikit-learn's KMeans takes as random_state (torch takes more)

ONE_EPOCH = ("--set", "pretrain.trainer.epochs=1", "--set", "pretrain.backbone.dim=8")


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


# -- 3. every float finite, every seed in the range its consumers take ----------------------------

@pytest.mark.parametrize("source, field", [
    ("--set pretrain.trainer.lr=1e999", "pretrain.trainer.lr"),
    ("--set pretrain.trainer.weight_decay=1e999", "pretrain.trainer.weight_decay"),
    ("--set sft.lr=NaN", "sft.lr"),
    ("[pretrain.trainer]\nlr = inf", "pretrain.trainer.lr"),
    ("[pretrain.trainer]\nweight_decay = nan", "pretrain.trainer.weight_decay"),
])
def test_a_non_finite_number_is_refused_naming_its_field(cli, dirs, tmp_path, source, field):
    toy(dirs[1])
    if source.startswith("--set"):
        args = source.split(" ", 1)
    else:
        (tmp_path / "c.toml").write_text(source + "\n")
        args = ["--config", str(tmp_path / "c.toml")]
    r = cli("run", "pretrain", "-d", "toy", *ONE_EPOCH, *args)
    assert r.code == 2 and f"{field}: Input should be a finite number" in r.err and one_line(r.err), r.err
    assert not (dirs[0] / "runs").exists()                          # nothing ran


@pytest.mark.parametrize("setting, field", [
    ("pretrain.trainer.seed=99999999999999999999", "pretrain.trainer.seed"),
    ("group.seed=-1", "group.seed"),
    (f"group.seed={SEED_MAX + 1}", "group.seed"),
    ("train.trainer.seed=-3", "train.trainer.seed"),
    ("sft.seed=-1", "sft.seed"),
])
def test_a_seed_no_consumer_takes_is_refused_before_any_stage_runs(cli, dirs, setting, field):
    toy(dirs[1])
    r = cli("run", "group", "-d", "toy", *ONE_EPOCH, "--set", "group.k=3", "--set", setting)
    assert r.code == 2 and f"{field}: Input should be" in r.err and one_line(r.err), r.err
    assert not (dirs[0] / "runs").exists()


def test_the_largest_seed_is_taken_by_every_consumer(cli, dirs):
    toy(dirs[1])
    r = cli("run", "group", "-d", "toy", *ONE_EPOCH, "--set", "group.k=3", "--set", f"group.seed={SEED_MAX}",
            "--set", f"pretrain.trainer.seed={SEED_MAX}", "--json")
    assert r.code == 0, r.err
    r = cli("run", "all", "-d", "toy", *ONE_EPOCH, "--set", f"train.trainer.seed={SEED_MAX}", "--seeds", "2")
    assert r.code == 2 and "--seeds 2" in r.err and str(SEED_MAX + 1) in r.err and one_line(r.err), r.err
    r = cli("data", "synth", "--name", "big", "--seed", "99999999999999999999")
    assert r.code == 2 and "--seed" in r.err and one_line(r.err), r.err


def test_a_stage_result_holding_a_nan_is_refused_in_one_line_not_recorded_as_null(cli, dirs, monkeypatch):
    import stages.group

    toy(dirs[1])
    monkeypatch.setattr(stages.group, "mean_entropy", lambda pref: float("nan"))
    r = cli("run", "group", "-d", "toy", *ONE_EPOCH, "--set", "group.k=3")
    assert r.code == 1 and "mean_entropy: Input should be a finite number (got nan)" in r.err, r.err
    assert r.err.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in r.err
    stages_run = {json.loads(p.read_text())["stage"] for p in (dirs[0] / "runs").glob("*/*.json")}
    assert stages_run == {"data", "pretrain"}
