"""Issue 14, input and records: dataset names (1), --from (2), record digests (3), input validation (8),
fetch (9). Each test failed on the code before the fix."""
from __future__ import annotations

import hashlib
import io
import json
import urllib.error
from pathlib import Path

import pytest
import torch

import pipeline.datasets as ds
from schemas.data import DataConfig, DataIn
from schemas.runtime import Runtime
from stages import data
from stages.idmap import decode_tokens
from stages.sequences import Sequences
from stages.synthetic import SyntheticConfig, write_synthetic


def toy(data_dir: Path, name: str = "toy", users: int = 30) -> Path:
    return write_synthetic(SyntheticConfig(users=users, items=20), data_dir / name / f"{name}.txt")


def good_file(tmp_path: Path) -> Path:
    src = tmp_path / "good.txt"
    src.write_text("1 1 2 3\n2 2 3 4\n")
    return src


# -- 1. dataset names --------------------------------------------------------------------------

BAD_NAMES = ["{victim}", "../../evil", "a/b", ".", "..", "", ".hidden", "a b", "x" * 101]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_dataset_names_are_refused_at_every_entry_point(cli, dirs, tmp_path, name):
    victim = tmp_path / "outside" / "victim"
    victim.parent.mkdir()
    victim.with_suffix(".txt").write_text("precious\n")
    name = name.format(victim=victim)
    src = good_file(tmp_path)
    calls = [("data", "import", str(src), "--name", name), ("data", "synth", "--name", name),
             ("data", "fetch", name, "--file", str(src), "--sha256", "0" * 64),
             ("run", "data", "--dataset", name), ("data", "stats", "--dataset", name)]
    for args in calls:
        r = cli(*args)
        assert r.code == 2, (args, r.err)
        assert "not allowed" in r.err and r.err.count("\n") == 1, (args, r.err)
    assert victim.with_suffix(".txt").read_text() == "precious\n"
    assert not (tmp_path / "evil").exists() and not dirs[1].exists()
    with pytest.raises(ds.DatasetUsageError):
        ds.locate(name, Runtime(data_dir=dirs[1], cache_dir=dirs[0], offline=True))


def test_a_name_whose_folder_links_outside_the_data_dir_is_refused(cli, dirs, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dirs[1].mkdir()
    (dirs[1] / "link").symlink_to(outside, target_is_directory=True)
    r = cli("data", "import", str(good_file(tmp_path)), "--name", "link")
    assert r.code == 2 and "outside the data dir" in r.err
    assert not list(outside.iterdir())


def test_import_synth_and_fetch_refuse_to_overwrite_without_force(cli, dirs, tmp_path):
    src = good_file(tmp_path)
    assert cli("data", "import", str(src), "--name", "mine").code == 0
    other = tmp_path / "other.inter"
    other.write_text("user_id:token\titem_id:token\nu\ta\nu\tb\nu\tc\n")
    r = cli("data", "import", str(other), "--name", "mine")
    assert r.code == 2 and "already exists" in r.err and "--force" in r.err
    assert (dirs[1] / "mine" / "mine.txt").read_text() == src.read_text()
    r = cli("data", "import", str(other), "--name", "mine", "--force")
    assert r.code == 0, r.err
    assert sorted(p.name for p in (dirs[1] / "mine").iterdir()) == ["mine.inter"]   # the old file is gone
    # synth
    assert cli("data", "synth", "--name", "toy", "--users", "20").code == 0
    before = (dirs[1] / "toy" / "toy.txt").read_text()
    r = cli("data", "synth", "--name", "toy", "--users", "25")
    assert r.code == 2 and "already exists" in r.err
    assert (dirs[1] / "toy" / "toy.txt").read_text() == before
    assert cli("data", "synth", "--name", "toy", "--users", "25", "--force").code == 0
    assert (dirs[1] / "toy" / "toy.txt").read_text() != before
    # fetch: the same content is "already there"; other content needs --force
    same = hashlib.sha256((dirs[1] / "toy" / "toy.txt").read_bytes()).hexdigest()
    r = cli("data", "fetch", "toy", "--file", str(dirs[1] / "toy" / "toy.txt"), "--sha256", same)
    assert r.code == 0 and "already there" in r.err
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    r = cli("data", "fetch", "toy", "--file", str(src), "--sha256", digest)
    assert r.code == 2 and "--force" in r.err
    r = cli("data", "fetch", "toy", "--file", str(src), "--sha256", digest, "--force")
    assert r.code == 0, r.err
    assert (dirs[1] / "toy" / "toy.txt").read_text() == src.read_text()


# -- 8. input validation -----------------------------------------------------------------------

def parse(path: Path, fmt: str = "auto"):
    out = data.run(DataConfig(dataset="x", format=fmt), DataIn(path=path), Runtime(progress=False))
    return out, Sequences.from_tensors(out.artifacts["sequences"])


def test_bom_and_blank_lines_are_accepted_in_every_format(tmp_path):
    files = {
        "a.txt": b"\xef\xbb\xbf1 5 6 7\n\n  \n2 7 8 9\r\n\n",
        "b.txt": b"\xef\xbb\xbf1 5\n1 6\n\n1 7\n2 7\n2 8\n\n2 9\n",
        "c.inter": b"\xef\xbb\xbfuser_id:token\titem_id:token\ttimestamp:float\n1\t5\t1\n\n1\t6\t2\n1\t7\t3\n"
                   b"2\t7\t1\n2\t8\t2\r\n2\t9\t3\n\n",
    }
    seqs = []
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
        seqs.append(parse(tmp_path / name)[1])
    for s in seqs:
        assert s.items.tolist() == [1, 2, 3, 3, 4, 5] and s.offsets.tolist() == [0, 3, 6]


@pytest.mark.parametrize("body,line,what", [
    (b"1 2 3 4\n\x89PNG\r\n\x1a\n\x00\x00", 2, "not UTF-8"),
    (b"1 2 3 4\n2 3\x00\x00 4\n", 2, "control character"),
    (b"1 2 3 4\n2 \xff\xfe 3 4\n", 2, "not UTF-8"),
    (b"1 2 3 4\n2 3 4 x9\n", 2, "not a positive integer"),
    (b"1 2 3 4\n2 3 4 -5\n", 2, "not a positive integer"),
])
def test_every_rejection_names_file_and_line(cli, dirs, tmp_path, body, line, what):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(body)
    r = cli("data", "import", str(bad), "--name", "bad")
    assert r.code == 1 and f"bad.txt:{line}:" in r.err and what in r.err, r.err
    assert r.err.count("\n") == 1 and "Traceback" not in r.err
    assert not (dirs[1] / "bad").exists()


def test_ids_of_any_size_map_to_contiguous_internal_ids_in_every_format(tmp_path):
    big = [str(2**31 - 1), str(2**31 + 5), str(2**63 + 1), "9" * 5000]
    (tmp_path / "a.txt").write_text(f"1 10 200 300\n{2**64} {' '.join(big)} 10\n")
    out, s = parse(tmp_path / "a.txt")
    assert out.result.n_items == 7 and s.n_items == 7         # not a 2^31-item (or 700-item) catalogue
    items = decode_tokens(out.artifacts["item_ids"])
    assert items == ["10", "200", "300", *big]                 # natural (numeric) order
    assert decode_tokens(out.artifacts["user_ids"]) == ["1", str(2**64)]
    assert [items[i - 1] for i in s.user(1).tolist()] == [*big, "10"]
    (tmp_path / "p.txt").write_text(f"7 {2**63 + 1}\n7 0010\n7 10\n3 5\n3 6\n3 5\n")
    out, s = parse(tmp_path / "p.txt")
    assert decode_tokens(out.artifacts["item_ids"]) == ["5", "6", "10", str(2**63 + 1)]   # '0010' is 10
    assert decode_tokens(out.artifacts["user_ids"]) == ["3", "7"]
    (tmp_path / "c.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                      "ann\tsku-9\t3\nann\tsku-10\t1\nann\t42\t2\nbob\t42\t1\nbob\tsku-9\t2\nbob\t7\t3\n")
    out, s = parse(tmp_path / "c.inter")
    assert decode_tokens(out.artifacts["item_ids"]) == ["7", "42", "sku-10", "sku-9"]
    assert s.items.tolist() == [3, 2, 4, 2, 4, 1]


def test_inter_without_timestamp_keeps_file_order(tmp_path):
    (tmp_path / "c.inter").write_text("user_id:token\titem_id:token\nu\tc\nu\ta\nu\tb\n")
    out, s = parse(tmp_path / "c.inter")
    assert [decode_tokens(out.artifacts["item_ids"])[i - 1] for i in s.items.tolist()] == ["c", "a", "b"]


def test_known_datasets_map_to_themselves(tmp_path):
    (tmp_path / "a.txt").write_text("1 1 2 3\n2 4 5 1 2\n")
    out, s = parse(tmp_path / "a.txt")
    assert decode_tokens(out.artifacts["item_ids"]) == [str(i) for i in range(1, 6)]
    assert s.items.tolist() == [1, 2, 3, 4, 5, 1, 2]


def test_id_maps_are_kept_in_the_cache(cli, dirs):
    toy(dirs[1])
    rec = json.loads(cli("run", "data", "--dataset", "toy", "--json").out)
    from pipeline.cache import Cache
    from schemas.common import ArtifactRef

    tensors = Cache(dirs[0]).get(ArtifactRef(**rec["outputs"]["item_ids"]))
    assert decode_tokens(tensors) == [str(i) for i in range(1, rec["result"]["n_items"] + 1)]
    assert len(decode_tokens(Cache(dirs[0]).get(ArtifactRef(**rec["outputs"]["user_ids"])))) == 30


@pytest.mark.parametrize("expr", ["pretrain.trainer.lr=true", "pretrain.backbone.dropout=false", "pretrain.trainer.mask_history=1",
                                  "group.k=\"16\""])
def test_config_values_are_parsed_strictly(cli, dirs, expr):
    toy(dirs[1])
    r = cli("run", "data", "--dataset", "toy", "--set", expr)
    assert r.code == 2 and expr.split("=")[0] in r.err and r.err.count("\n") == 1, r.err


def test_text_fields_take_the_text(cli, dirs):
    toy(dirs[1], name="123")
    r = cli("run", "data", "--set", "data.dataset=123", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["result"]["dataset"] == "123"


# -- 9. fetch ----------------------------------------------------------------------------------

class FakeWeb:
    """Stands in for urllib's opener: https://site/<name> -> bytes, else 404."""

    def __init__(self, pages: dict[str, bytes]):
        self.pages, self.opened = pages, []

    def open(self, url, timeout):
        self.opened.append(url)
        if url not in self.pages:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return io.BytesIO(self.pages[url])


@pytest.fixture
def web(monkeypatch):
    fake = FakeWeb({})
    monkeypatch.setattr(ds, "OPENER", fake)
    return fake


@pytest.mark.parametrize("url", ["http://example.org/a.txt", "file:///etc/passwd", "ftp://x/y", "/etc/passwd"])
def test_fetch_takes_https_only(cli, dirs, web, url):
    r = cli("data", "fetch", "remote", "--url", url, "--sha256", "0" * 64)
    assert r.code == 2 and "https" in r.err
    assert web.opened == [] and not dirs[1].exists()


def test_pinned_hash_cannot_be_replaced(cli, dirs, web, tmp_path):
    src = good_file(tmp_path)
    web.pages["https://mirror/Beauty.txt"] = src.read_bytes()
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    r = cli("data", "fetch", "beauty", "--url", "https://mirror/Beauty.txt", "--sha256", digest)
    assert r.code == 2 and "pinned" in r.err
    r = cli("data", "fetch", "beauty", "--url", "https://mirror/Beauty.txt")   # a mirror keeps the pin
    assert r.code == 1 and "sha256 mismatch" in r.err
    r = cli("data", "fetch", "beauty", "--file", str(src))
    assert r.code == 1 and "sha256 mismatch" in r.err
    assert not dirs[1].exists()


def test_fetched_content_is_validated_before_it_is_kept(cli, dirs, web):
    body = b"1 2 3 4\n2 3 4 5\n<html>oops</html>\n"
    web.pages["https://site/d.txt"] = body
    r = cli("data", "fetch", "remote", "--url", "https://site/d.txt", "--sha256", hashlib.sha256(body).hexdigest())
    assert r.code == 1 and "https://site/d.txt:3:" in r.err, r.err
    assert not dirs[1].exists()


def test_failed_fetch_leaves_no_empty_folder(cli, dirs, web):
    r = cli("data", "fetch", "remote", "--url", "https://site/missing.txt", "--sha256", "0" * 64)
    assert r.code == 1 and "404" in r.err
    assert not dirs[1].exists()
    dirs[1].mkdir()
    r = cli("data", "fetch", "remote", "--url", "https://site/missing.txt", "--sha256", "0" * 64)
    assert r.code == 1 and list(dirs[1].iterdir()) == []   # the data dir stays, nothing in it


def test_fetch_from_an_explicit_local_file(cli, dirs, tmp_path, monkeypatch):
    src = toy(tmp_path, "src")
    pinned = hashlib.sha256(src.read_bytes()).hexdigest()
    monkeypatch.setitem(ds.KNOWN, "beauty", ds.Source("beauty", ("beauty/Beauty.txt",), "beauty/Beauty.txt",
                                                      "https://unreachable/Beauty.txt", pinned))
    r = cli("data", "fetch", "beauty", "--file", str(src))
    assert r.code == 0, r.err
    assert (dirs[1] / "beauty" / "Beauty.txt").read_bytes() == src.read_bytes()


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


def test_a_record_written_without_a_digest_is_sealed_on_use(cli, dirs):
    toy(dirs[1])
    key = json.loads(cli("run", "data", "--dataset", "toy", "--json").out)["key"]
    path = _stored(dirs, key)
    legacy = json.loads(path.read_text())
    del legacy["record_digest"]
    path.write_text(json.dumps(legacy))
    r = json.loads(cli("run", "data", "--dataset", "toy", "--json").out)
    assert r["cached"] is True and "record_digest" in json.loads(path.read_text())


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
    from pipeline.runner import Runner

    toy(dirs[1])
    rt = Runtime(cache_dir=dirs[0], data_dir=dirs[1], progress=False, offline=True)
    first = Runner(rt).run("data", build_config(sets=["data.dataset=toy", "group.k=3"]))
    cfg = build_config(sets=["data.dataset=toy"])
    hit = Runner(rt).run("data", cfg)
    assert hit.cached and hit.key == first.key and hit.pipeline == cfg.model_dump(mode="json")
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
