"""The CLI contract: stdout is results only, exit codes, errors name their cause, nothing half-written."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from pipeline.synthetic import SyntheticConfig, write_synthetic


def toy(data_dir: Path, name: str = "toy", users: int = 40) -> Path:
    return write_synthetic(SyntheticConfig(users=users, items=25), data_dir / name / f"{name}.txt")


def test_help_on_every_verb_has_an_example(cli):
    for verb in (["run"], ["data", "stats"], ["data", "fetch"], ["data", "import"], ["data", "synth"],
                 ["cache", "ls"], ["cache", "show"], ["cache", "verify"], ["cache", "gc"], ["cache", "path"]):
        r = cli(*verb, "--help")
        assert r.code == 0, verb
        assert "Example" in r.out, verb


def test_top_level_help_names_what_report_writes(cli):
    """Click cuts a docstring's summary at its first period: report's once read "..., Fig." and stopped."""
    r = cli("--help")
    line = next(x for x in r.out.splitlines() if x.strip().startswith("report"))
    assert "Figs. 4-5" in line and not line.rstrip().endswith("Fig.")


def test_data_stats_json_is_one_object_on_stdout(cli, dirs):
    toy(dirs[1])
    r = cli("--progress", "data", "stats", "--dataset", "toy", "--json")
    assert r.code == 0, r.err
    obj = json.loads(r.out)                       # exactly one JSON document
    assert obj["n_users"] == 40 and r.out.count("\n") == 1
    assert "computing" in r.err                    # logs went to stderr


def test_run_data_json_then_cache_hit(cli, dirs):
    toy(dirs[1])
    a = json.loads(cli("run", "data", "--dataset", "toy", "--json").out)
    b = cli("run", "data", "--dataset", "toy", "--json")
    assert json.loads(b.out)["key"] == a["key"] and json.loads(b.out)["cached"] is True
    assert "cache hit" in b.err


def test_from_stdin_continues_upstream_config(cli, dirs):
    toy(dirs[1])
    up = cli("run", "data", "--dataset", "toy", "--set", "data.min_length=4", "--json").out
    r = cli("run", "pretrain", "--from", "-", "--set", "pretrain.trainer.epochs=1", "--json", stdin=up)
    assert r.code == 0, r.err
    assert json.loads(r.out)["pipeline"]["data"] == json.loads(up)["pipeline"]["data"]
    assert json.loads(r.out)["inputs"]["sequences"] == json.loads(up)["outputs"]["sequences"]["digest"]
    bad = cli("run", "data", "--from", "-", stdin="not json")
    assert bad.code == 2 and "--from" in bad.err


@pytest.mark.parametrize("text,line", [("1 5 6 7\n2 1\x00 2 3\n", 2), ("1 5 six 7\n", 1),
                                        ("1 5 6 7\n2 1 2\n", 2), ("1 5 -3 7\n", 1)])
def test_malformed_input_exit_1_names_file_and_line_writes_nothing(cli, dirs, text, line):
    cache, data = dirs
    bad = data / "bad" / "bad.txt"
    bad.parent.mkdir(parents=True)
    bad.write_text(text)
    r = cli("run", "data", "--dataset", "bad")
    assert r.code == 1
    assert f"bad.txt:{line}:" in r.err
    assert "Traceback" not in r.err
    assert not (cache / "runs").exists() or not list((cache / "runs").rglob("*.json"))
    assert not (cache / "objects").exists() or not list((cache / "objects").rglob("*"))


def test_usage_errors_exit_2_and_name_the_field(cli, dirs):
    toy(dirs[1])
    r = cli("run", "data", "--dataset", "toy", "--set", "data.min_length=two")
    assert r.code == 2 and "data.min_length" in r.err
    r = cli("run", "data", "--set", "pretrain.backbone.nme=sasrec")
    assert r.code == 2 and "pretrain.backbone.nme" in r.err and "unknown field" in r.err
    r = cli("run", "nosuchstage")
    assert r.code == 2
    r = cli("run", "data", "--no-such-flag")
    assert r.code == 2


def test_config_file_overrides(cli, dirs, tmp_path):
    toy(dirs[1])
    cfg = tmp_path / "exp.toml"
    cfg.write_text('[data]\ndataset = "toy"\nmin_length = 4\n')
    r = cli("run", "data", "--config", str(cfg), "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["config"]["min_length"] == 4


def test_unknown_dataset_offline_says_what_to_do(cli):
    r = cli("--offline", "run", "data", "--dataset", "yelp")   # beauty ships with the package
    assert r.code == 1 and "Yelp.txt" in r.err and "724b219106b8" in r.err
    r = cli("run", "data", "--dataset", "nosuch")
    assert r.code == 1 and "data import" in r.err


def test_cache_ls_show_verify_gc(cli, dirs):
    toy(dirs[1])
    key = json.loads(cli("run", "data", "--dataset", "toy", "--json").out)["key"]
    ls = cli("cache", "ls")
    assert ls.out.split("\t")[0] == key
    show = cli("cache", "show", key[:10])
    assert json.loads(show.out)["stage"] == "data"
    assert cli("cache", "verify").code == 0
    obj = next((dirs[0] / "objects").rglob("*.safetensors"))
    obj.write_bytes(b"junk")
    v = cli("cache", "verify")
    assert v.code == 1 and "corrupt" in v.err
    (dirs[0] / "objects" / "zz").mkdir()
    (dirs[0] / "objects" / "zz" / "orphan.safetensors").write_bytes(b"x")
    gc = cli("cache", "gc", "--min-age", "0")   # the orphan is new: spared by default (a live run might be about to record it)
    assert gc.code == 0 and not (dirs[0] / "objects" / "zz" / "orphan.safetensors").exists()
    stale = dirs[0] / "runs" / "ab" / ("ab" * 32 + ".lock")
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("999999999")
    assert cli("cache", "gc").code == 0 and not stale.exists()
    assert cli("cache", "path").out.strip() == str(dirs[0])


def test_import_validates_and_installs(cli, dirs, tmp_path):
    src = tmp_path / "mine.inter"
    src.write_text("user_id:token\titem_id:token\ttimestamp:float\n" +
                   "".join(f"u{u}\ti{(u + t) % 7}\t{t}\n" for u in range(5) for t in range(4)))
    r = cli("data", "import", str(src), "--name", "mine")
    assert r.code == 0, r.err
    assert Path(r.out.strip()).exists()
    assert json.loads(cli("data", "stats", "--dataset", "mine", "--json").out)["n_users"] == 5
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n")
    r = cli("data", "import", str(bad), "--name", "bad")
    assert r.code == 1 and "bad.txt:1:" in r.err
    assert not (dirs[1] / "bad").exists()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path, monkeypatch):
    """A local server standing in for https://tslrec.test (fetch takes https URLs only)."""
    import urllib.request

    import pipeline.datasets as ds

    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _Quiet(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local = f"http://127.0.0.1:{server.server_address[1]}"

    class Rewrite:
        def open(self, url, timeout):
            return urllib.request.urlopen(url.replace(HTTPS_TEST, local), timeout=timeout)

    monkeypatch.setattr(ds, "OPENER", Rewrite())
    yield root, HTTPS_TEST
    server.shutdown()


HTTPS_TEST = "https://tslrec.test"


def test_fetch_checks_sha256_against_local_server(cli, dirs, http_server):
    root, base = http_server
    body = toy(root, "srv").read_bytes()
    good = hashlib.sha256(body).hexdigest()
    url = f"{base}/srv/srv.txt"
    r = cli("data", "fetch", "remote", "--url", url, "--sha256", "0" * 64)
    assert r.code == 1 and "sha256 mismatch" in r.err
    assert not (dirs[1] / "remote").exists() or not list((dirs[1] / "remote").iterdir())
    r = cli("data", "fetch", "remote", "--url", url, "--sha256", good)
    assert r.code == 0, r.err
    assert Path(r.out.strip()).read_bytes() == body
    assert json.loads(cli("data", "stats", "--dataset", "remote", "--json").out)["n_users"] == 40


def test_run_fetches_a_known_dataset_when_missing(cli, dirs, http_server, monkeypatch):
    import pipeline.datasets as ds

    root, base = http_server
    body = toy(root, "srv").read_bytes()
    fake = ds.Source("yelp", ("yelp/Yelp.txt",), "yelp/Yelp.txt", f"{base}/srv/srv.txt",
                     hashlib.sha256(body).hexdigest())
    monkeypatch.setitem(ds.KNOWN, "yelp", fake)   # beauty would come from the package, not the server
    r = cli("run", "data", "--dataset", "yelp", "--json")
    assert r.code == 0, r.err
    assert (dirs[1] / "yelp" / "Yelp.txt").read_bytes() == body


def test_progress_in_a_log_is_plain_lines(capsys):
    from pipeline.progress import LineTracker

    with LineTracker("epoch", 3, every=0.0) as t:
        for i in range(3):
            t.advance(1, loss=1.0 / (i + 1))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and lines[-1].endswith("epoch 3/3 loss=0.3333")
