"""Issue 14, run records: record digests (3) and --from (2). Each test failed on the code before the fix.
Dataset names, input validation and fetch are in test_reliability_input.py."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from schemas.runtime import Runtime
from tests.conftest import toy

# -- 3. run records carry a digest of their own content ----------------------------------------

def _stored(dirs, key: str) -> Path:
    return dirs[0] / "runs" / key[:2] / f"{key}.json"


def _flip_density(path: Path) -> float:
    """Change one digit of the stored density (a metric of the data stage); returns the true value."""
    rec = json.loads(path.read_text())
    true = rec["result"]["density"]
    text = path.read_text()
    digits = repr(true)
    flipped = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    path.write_text(text.replace(digits, flipped, 1))
    assert json.loads(path.read_text())["result"]["density"] != true
    return true


def test_a_tampered_record_is_recomputed_never_served(cli, dirs):
    toy(dirs[1])
    first = json.loads(cli("run", "data", "--dataset", "toy", "--json").out)
    assert first["record_digest"]
    true = _flip_density(_stored(dirs, first["key"]))
    r = cli("run", "data", "--dataset", "toy", "--json")
    assert r.code == 0 and "cache corrupt" in r.err and "record_digest" in r.err
    again = json.loads(r.out)
    assert again["cached"] is False and again["result"]["density"] == true
    assert json.loads(cli("run", "data", "--dataset", "toy", "--json").out)["cached"] is True   # repaired


def test_cache_verify_checks_records_and_reports_unparsable_ones(cli, dirs):
    toy(dirs[1])
    key = json.loads(cli("run", "data", "--dataset", "toy", "--json").out)["key"]
    assert cli("cache", "verify").code == 0
    _flip_density(_stored(dirs, key))
    v = cli("cache", "verify", "--json")
    assert v.code == 1 and "record_digest" in v.err and json.loads(v.out)["bad"][0]["run"] == key
    junk = dirs[0] / "runs" / "ff" / ("f" * 64 + ".json")
    junk.parent.mkdir(exist_ok=True)
    junk.write_text("{not json")
    v = cli("cache", "verify", "--json")
    assert v.code == 1 and "f" * 64 in v.out and "does not parse" in v.err
    ls = cli("cache", "ls")
    assert ls.code == 0 and "unreadable" in ls.err and str(junk) in ls.err
    assert cli("cache", "verify", "--fix").code == 0 and not junk.exists()
    assert cli("cache", "verify").code == 0


def test_cache_verify_rehashes_objects_no_record_names(cli, dirs):
    from pipeline.cache import Cache

    ref = Cache(dirs[0]).put("loose", {"x": torch.ones(3)})
    assert cli("cache", "verify").code == 0
    Path(ref.path).write_bytes(b"junk")
    v = cli("cache", "verify")
    assert v.code == 1 and ref.digest[:12] in v.err


def test_a_record_from_before_a_field_was_added_is_still_trusted(cli, dirs):
    """An older tslrec wrote and sealed the record without today's later fields (peak memory): its
    digest covers what it wrote, so today's reader serves it instead of calling it tampered."""
    from schemas.common import json_digest

    toy(dirs[1])
    key = json.loads(cli("run", "data", "--dataset", "toy", "--json").out)["key"]
    path = _stored(dirs, key)
    older = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("peak_")}
    older["record_digest"] = json_digest(older)
    path.write_text(json.dumps(older))
    r = cli("run", "data", "--dataset", "toy", "--json")
    assert r.code == 0 and "corrupt" not in r.err and json.loads(r.out)["cached"] is True
    assert cli("cache", "verify").code == 0
    older["result"]["density"] += 1e-6                      # and a change to it is still caught
    path.write_text(json.dumps(older))
    assert cli("cache", "verify").code == 1


# -- 2. --from: the record's own config, checked -------------------------------------------------

ONE_EPOCH = ("--set", "pretrain.trainer.epochs=1")


def test_from_runs_with_the_records_own_config_not_an_earlier_commands(cli, dirs):
    toy(dirs[1])
    # an unrelated earlier command computed `data` with another pretrain lr
    earlier = cli("run", "data", "-d", "toy", "--set", "pretrain.trainer.lr=0.5", *ONE_EPOCH, "--json")
    assert earlier.code == 0, earlier.err
    up = cli("run", "data", "-d", "toy", *ONE_EPOCH, "--json")        # a cache hit
    assert json.loads(up.out)["cached"] is True
    assert json.loads(up.out)["pipeline"]["pretrain"]["trainer"]["lr"] == 0.001   # this request's config
    direct = json.loads(cli("run", "pretrain", "-d", "toy", *ONE_EPOCH, "--json").out)
    piped = cli("run", "pretrain", "--from", "-", *ONE_EPOCH, "--json", stdin=up.out)
    assert piped.code == 0, piped.err
    assert json.loads(piped.out)["config"]["trainer"]["lr"] == 0.001
    assert json.loads(piped.out)["key"] == direct["key"]
    # the earlier command's own record says lr 0.5 for pretrain; a data record does not decide pretrain's config
    again = cli("run", "pretrain", "--from", "-", *ONE_EPOCH, "--json", stdin=earlier.out)
    assert again.code == 0 and json.loads(again.out)["key"] == direct["key"]


def test_a_hit_carries_this_requests_pipeline(dirs):
    from pipeline.cache import Cache
    from pipeline.overrides import build_config
    from pipeline.precision import resolve_precision
    from pipeline.runner import Runner

    toy(dirs[1])
    rt = Runtime(cache_dir=dirs[0], data_dir=dirs[1], progress=False, offline=True)
    first = Runner(rt).run("data", build_config(sets=["data.dataset=toy", "group.k=3"]))
    cfg = build_config(sets=["data.dataset=toy"])
    hit = Runner(rt).run("data", cfg)
    ran = resolve_precision(cfg, rt)        # 'auto' precisions: the record names what this machine runs
    assert hit.cached and hit.key == first.key and hit.pipeline == ran.model_dump(mode="json")
    assert '"precision": "auto"' in json.dumps(cfg.model_dump(mode="json"))
    assert '"precision": "auto"' not in json.dumps(hit.pipeline)
    assert hit.record_digest == hit.content_digest()
    assert Cache(dirs[0]).get_run(first.key).pipeline["group"]["k"] == 3     # the store is unchanged


def test_from_refuses_a_record_the_stage_does_not_consume(cli, dirs):
    toy(dirs[1])
    group = cli("run", "group", "-d", "toy", *ONE_EPOCH, "--set", "group.k=3", "--set", "group.n_init=1", "--json")
    assert group.code == 0, group.err
    r = cli("run", "pretrain", "--from", "-", stdin=group.out)
    assert r.code == 2 and "a group record cannot feed `run pretrain`" in r.err and r.err.count("\n") == 1
    pretrain = cli("run", "pretrain", "-d", "toy", *ONE_EPOCH, "--json").out
    r = cli("run", "data", "--from", "-", stdin=pretrain)
    assert r.code == 2 and "takes no upstream record" in r.err
    r = cli("run", "group", "--from", "-", "--set", "pretrain.trainer.lr=0.1", stdin=pretrain)
    assert r.code == 2 and "changes pretrain settings" in r.err
    r = cli("run", "group", "--from", "-", "--set", "group.k=3", "--set", "group.n_init=1", "--json", stdin=pretrain)
    assert r.code == 0 and json.loads(r.out)["key"] == json.loads(group.out)["key"]


def test_from_checks_the_records_key_digest_and_config(cli, dirs):
    from schemas.common import RunRecord

    toy(dirs[1])
    up = json.loads(cli("run", "data", "-d", "toy", "--json").out)
    r = cli("run", "pretrain", "--from", "-", stdin=json.dumps({**up, "key": "../../etc"}))
    assert r.code == 2 and "not a tslrec run record" in r.err and "key" in r.err
    r = cli("run", "pretrain", "--from", "-", stdin=json.dumps({**up, "result": {**up["result"], "n_items": 3}}))
    assert r.code == 2 and "modified" in r.err
    forged = RunRecord.model_validate({**up, "pipeline": {**up["pipeline"], "data": {**up["pipeline"]["data"], "min_length": 5}}})
    r = cli("run", "pretrain", "--from", "-", stdin=forged.sealed().model_dump_json())
    assert r.code == 2 and "keyed with" in r.err


def test_from_refuses_a_record_the_runner_does_not_reproduce(cli, dirs):
    toy(dirs[1])
    up = cli("run", "data", "-d", "toy", "--json").out
    assert cli("data", "synth", "--name", "toy", "--users", "31", "--force").code == 0   # the data changed
    r = cli("run", "pretrain", "--from", "-", *ONE_EPOCH, stdin=up)
    assert r.code == 2 and "not reproduced" in r.err
    assert not [p for p in (dirs[0] / "runs").rglob("*.json") if json.loads(p.read_text())["stage"] == "pretrain"]


# -- a key covers what a default meant ------------------------------------------------------------
def test_the_sft_key_follows_its_task_defaults_not_only_the_fields_set(dirs, monkeypatch):
    """The key hashes the resolved config: a changed per-task default (schemas/sft.py, not digested as code)
    changes it, and setting a field to its task's default is the same run as leaving it unset."""
    from pipeline.overrides import build_config
    from pipeline.runner import Runner
    from schemas import sft as sft_schema

    toy(dirs[1])
    keys = []

    def key_only(self, stage, spec, module, stage_cfg, cfg, parts, key, *a):
        keys.append(key)
        raise KeyboardInterrupt

    runner = Runner(Runtime(progress=False, threads=1, cache_dir=dirs[0]))
    tiny = ["data.dataset=toy", "pretrain.trainer.epochs=1", "pretrain.backbone.dim=8", "sft.model=tiny-bert"]
    runner.run("group", build_config(sets=tiny))
    monkeypatch.setattr(Runner, "_compute", key_only)

    def sft_key(*sets: str) -> str:
        try:
            Runner(Runtime(progress=False, threads=1, cache_dir=dirs[0])).run("sft", build_config(sets=[*tiny, *sets]))
        except KeyboardInterrupt:
            return keys[-1]
        raise AssertionError("sft was not computed")

    default = sft_key()
    assert sft_key("sft.lr=0.001") == default == sft_key("sft.lm_dropout=model")
    monkeypatch.setitem(sft_schema.TASK_DEFAULTS, "group", {**sft_schema.TASK_DEFAULTS["group"], "lr": 5e-4})
    assert sft_key() != default
    assert sft_key() == sft_key("sft.lr=0.0005")
