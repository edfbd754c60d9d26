"""Issue 28, what is trusted: records without a digest (1), corrupted checkpoints (2), gc next to a
running command (5). Each test failed on the code before its fix. Numbers, errors a user can act on
and odd inputs (3, 4, 6) are in test_reliability_errors.py."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import torch

from pipeline.cache import Cache
from pipeline.runner import Runner
from schemas.pipeline import PipelineConfig
from schemas.runtime import Runtime
from stages.core import checkpoint
from tests.conftest import toy

ONE_EPOCH = ("--set", "pretrain.trainer.epochs=1", "--set", "pretrain.backbone.dim=8")


def stored(cache: Path, key: str) -> Path:
    return cache / "runs" / key[:2] / f"{key}.json"


def runs(cache: Path) -> set[str]:
    return {p.stem for p in (cache / "runs").glob("*/*.json")}


# -- 1. a record without a digest is corrupt, everywhere ----------------------------------------

def test_a_forged_record_without_its_digest_is_recomputed_never_served_or_resealed(cli, dirs):
    toy(dirs[1])
    first = json.loads(cli("run", "pretrain", "-d", "toy", *ONE_EPOCH, "--json").out)
    path = stored(dirs[0], first["key"])
    forged = json.loads(path.read_text())
    del forged["record_digest"]
    forged["result"]["test"]["ndcg10"] = 0.999
    path.write_text(json.dumps(forged))
    v = cli("cache", "verify")
    assert v.code == 1 and "carries no record_digest" in v.err, v.err
    r = cli("run", "pretrain", "-d", "toy", *ONE_EPOCH, "--json")
    assert r.code == 0 and r.err.count("cache corrupt") == 1, r.err                # said once
    again = json.loads(r.out)
    assert again["cached"] is False and again["result"]["test"]["ndcg10"] == first["result"]["test"]["ndcg10"]
    assert json.loads(path.read_text())["result"]["test"]["ndcg10"] != 0.999     # recomputed, not resealed
    assert cli("cache", "verify").code == 0


def test_from_refuses_a_record_without_its_digest_before_computing_anything(cli, dirs):
    toy(dirs[1])
    up = json.loads(cli("run", "data", "-d", "toy", "--json").out)
    before = runs(dirs[0])
    plain = {k: v for k, v in up.items() if k != "record_digest"}
    tampered = {**plain, "config": {**plain["config"], "min_length": 4},
                "pipeline": {**plain["pipeline"], "data": {**plain["pipeline"]["data"], "min_length": 4}}}
    for record in (plain, tampered):
        r = cli("run", "pretrain", "--from", "-", *ONE_EPOCH, stdin=json.dumps(record))
        assert r.code == 2 and "no record_digest" in r.err and r.err.count("\n") == 1, r.err
        assert runs(dirs[0]) == before                                            # nothing ran


def test_export_from_refuses_an_edited_record(cli, dirs, tmp_path):
    toy(dirs[1])
    up = json.loads(cli("run", "data", "-d", "toy", "--json").out)
    lied = {**up, "pipeline": {**up["pipeline"], "data": {**up["pipeline"]["data"], "dataset": "beauty"}}}
    undigested = {k: v for k, v in lied.items() if k != "record_digest"}
    for record, needle in ((lied, "does not match its record_digest"), (undigested, "no record_digest")):
        r = cli("export", "--from", "-", "--out", str(tmp_path / "out"), stdin=json.dumps(record))
        assert r.code == 2 and needle in r.err and r.err.count("\n") == 1, r.err
        assert not (tmp_path / "out").exists()
    r = cli("export", "--from", "-", "--out", str(tmp_path / "out"), stdin=json.dumps(up))
    assert r.code == 0 and "dataset:  toy" in (tmp_path / "out" / "README.txt").read_text()


# -- 2. a checkpoint that fails its digest is never resumed from ----------------------------------

FOUR_EPOCHS = PipelineConfig.model_validate({"data": {"dataset": "toy"}, "pretrain": {
    "backbone": {"dim": 8}, "trainer": {"epochs": 4, "patience": 4}}})


class Crash(Exception):
    pass


def interrupted_pretrain(rt: Runtime, monkeypatch) -> Path:
    """Pretrain killed after its second epoch's checkpoint; -> the checkpoint file."""
    real = checkpoint.save

    def save_then_crash(rt, name, epoch, *a, **kw):
        real(rt, name, epoch, *a, **kw)
        if epoch == 2:
            raise Crash

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save", save_then_crash)
        with pytest.raises(Crash):
            Runner(rt).run("pretrain", FOUR_EPOCHS)
    (path,) = Cache(rt.cache_dir).root.glob("checkpoints/*/*.pt")
    return path


def flip_a_weight_byte(path: Path) -> None:
    """Flip one byte inside the stored item embeddings (the tensor data, not the zip's bookkeeping)."""
    raw = bytearray(path.read_bytes())
    start = raw.find(b"PK\x03\x04")                    # torch.save's zip, whatever precedes it
    state = torch.load(io.BytesIO(bytes(raw[start:])), weights_only=True)
    weight = next(v for k, v in state["weights"].items() if "item" in k and v.dim() == 2)
    at = raw.find(weight[1:].numpy().tobytes()[:64])
    assert at > 0
    raw[at + 2] ^= 0x40
    path.write_bytes(bytes(raw))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, what", [(flip_a_weight_byte, "does not match its sha256"),
                                          (truncate, "is truncated")])
def test_a_damaged_checkpoint_is_reported_and_the_stage_starts_over(cli, dirs, tmp_path, monkeypatch, capsys,
                                                                    damage, what):
    toy(dirs[1])
    whole = Runner(Runtime(cache_dir=tmp_path / "whole", data_dir=dirs[1], progress=False)).run("pretrain", FOUR_EPOCHS)
    rt = Runtime(cache_dir=dirs[0], data_dir=dirs[1], progress=False)
    path = interrupted_pretrain(rt, monkeypatch)
    damage(path)
    v = cli("cache", "verify")
    assert v.code == 1 and f"corrupt checkpoint {path}: {what}" in v.err, v.err
    capsys.readouterr()
    again = Runner(rt).run("pretrain", FOUR_EPOCHS)
    err = capsys.readouterr().err
    assert f"{path.name} {what}" in err and "starts over from epoch 1" in err and "resuming" not in err, err
    assert again.key == whole.key
    assert {k: r.digest for k, r in again.outputs.items()} == {k: r.digest for k, r in whole.outputs.items()}
    assert again.result["test"] == whole.result["test"]


# -- 5. gc next to a running command --------------------------------------------------------------

def live_run(cache: Cache, key: str):
    """What a run being computed has in the cache: its lock (held, with its owner file) and a checkpoint."""
    claim = cache.claim(key, label="pretrain")
    claim.__enter__()
    (cache.checkpoint_dir(key)).mkdir(parents=True)
    (cache.checkpoint_dir(key) / "fit-pretrain_sasrec.pt").write_bytes(b"c" * 7)
    return claim


def test_gc_all_removes_everything_but_what_a_live_run_holds(cli, dirs):
    toy(dirs[1])
    done = json.loads(cli("run", "data", "-d", "toy", "--json").out)
    cache, live = Cache(dirs[0]), "ab" * 32
    claim = live_run(cache, live)
    try:
        r = cli("cache", "gc", "--all")
        assert r.code == 0, r.err
        assert cache.lock_path(live).exists() and cache.lock_path(live).with_suffix(".owner").exists()
        assert (cache.checkpoint_dir(live) / "fit-pretrain_sasrec.pt").exists()
        assert f"kept run {live[:12]}" in r.err and f"pid {os.getpid()}" in r.err
        assert not stored(dirs[0], done["key"]).exists() and int(r.out) > 0
        assert list(cache.objects())          # young: maybe the live run's outputs, not recorded yet
    finally:
        claim.__exit__(None, None, None)
    r = cli("cache", "gc", "--all")
    assert r.code == 0 and not cache.checkpoint_dir(live).exists() and not list(cache.objects())
    assert not list(dirs[0].rglob("*.lock")) and not list(dirs[0].rglob("*.json"))


def test_gc_reports_only_what_it_removed(cli, dirs):
    cache, live, dead = Cache(dirs[0]), "ab" * 32, "cd" * 32
    (cache.checkpoint_dir(dead)).mkdir(parents=True)
    (cache.checkpoint_dir(dead) / "fit-x.pt").write_bytes(b"d" * 5)
    claim = live_run(cache, live)
    try:
        for args in (["--dry-run"], []):
            r = cli("cache", "gc", "--checkpoints", *args)
            assert r.code == 0 and int(r.out) == 5, r.err
            assert str(cache.checkpoint_dir(dead)) in r.err and str(cache.checkpoint_dir(live)) not in r.err, r.err
        assert cache.checkpoint_dir(live).exists() and not cache.checkpoint_dir(dead).exists()
        r = cli("cache", "gc", "--checkpoints")
        assert int(r.out) == 0 and "remov" not in r.err and f"kept run {live[:12]}" in r.err, r.err
    finally:
        claim.__exit__(None, None, None)
