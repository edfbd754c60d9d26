"""benchmarks.cache_pack: a chain packed from one cache serves another as cache hits."""
from __future__ import annotations

import json
import tarfile

from benchmarks.cache_pack import pack

TINY = ["--set", "pretrain.trainer.epochs=1", "--set", "sft.model=tiny-bert", "--set", "group.k=4",
        "--set", "pretrain.backbone.dim=16"]


def test_a_packed_chain_is_all_hits_in_an_empty_cache(cli, dirs, tmp_path, monkeypatch):
    cache, _ = dirs
    assert cli("data", "synth", "--name", "toy", "--users", "40", "--items", "20").code == 0
    first = cli("--threads", "1", "run", "augment", "-d", "toy", *TINY, "--json")
    assert first.code == 0, first.err
    assert pack(cache, tmp_path / "chain.tgz", datasets={"other"}) == 0        # the dataset filter
    assert pack(cache, tmp_path / "chain.tgz") == 5                            # data .. augment
    with tarfile.open(tmp_path / "chain.tgz") as tar:
        names = tar.getnames()
        assert all(n.startswith(("runs/", "objects/")) for n in names)
        tar.extractall(tmp_path / "fresh", filter="data")
    monkeypatch.setenv("TSLREC_CACHE_DIR", str(tmp_path / "fresh"))
    again = cli("--threads", "1", "run", "augment", "-d", "toy", *TINY, "--json")
    assert again.code == 0, again.err
    assert "computing" not in again.err
    assert json.loads(again.out)["key"] == json.loads(first.out)["key"]


def test_a_folder_that_is_no_cache_is_one_line_and_writes_nothing(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "benchmarks.cache_pack", "--cache", str(tmp_path / "none"), "--out",
                        str(tmp_path / "p.tgz")], capture_output=True, text=True, cwd=root)
    assert r.returncode == 1 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("p.*"))
