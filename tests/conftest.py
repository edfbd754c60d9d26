"""Shared fixtures: an isolated cache/data dir per test and an in-process CLI driver."""
from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    cache, data = tmp_path / "cache", tmp_path / "data"
    monkeypatch.setenv("TSLREC_CACHE_DIR", str(cache))
    monkeypatch.setenv("TSLREC_DATA_DIR", str(data))
    return cache, data


@pytest.fixture
def cli(dirs, monkeypatch, capsys):
    """Run `tslrec ARGS` in-process through the real entry point; returns exit code, stdout, stderr."""
    import tslrec

    def invoke(*args: str, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "argv", ["tslrec", *args])
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        try:
            tslrec.main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke
