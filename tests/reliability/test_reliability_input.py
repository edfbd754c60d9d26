"""Issue 14, input: dataset names (1), input validation (8), fetch (9). Each test failed on the code
before the fix. Record digests (3) and --from (2) are in test_reliability_records.py."""
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
from stages.core.idmap import decode_tokens
from stages.core.sequences import Sequences
from tests.conftest import toy


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
