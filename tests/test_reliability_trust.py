"""Issue 28, what is trusted: records without a digest (1), corrupted checkpoints (2), gc next to a
running command (5). Each test failed on the code before its fix. Numbers, errors a user can act on
and odd inputs (3, 4, 6) are in test_reliability_errors.py."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import toy

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
    assert r.code == 0 and "cache corrupt" in r.err, r.err
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
