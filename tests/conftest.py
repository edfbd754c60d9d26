"""Shared fixtures: an isolated cache/data dir per test and an in-process CLI driver."""
from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass

import pytest
import torch

from stages.core.sequences import Sequences

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


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core box, a second OpenMP thread that loses its core makes
    every op wait for it (measured: MiniLM forward 0.04 s with 1 thread, 0.9 s with 2 under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cycle_dataset(users: int = 60, n_items: int = 40, seed: int = 0) -> Sequences:
    """Each user walks items in order from a random start: next = prev % N + 1 (deterministic)."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(1, n_items + 1, (users,), generator=g)
    lengths = torch.randint(6, 13, (users,), generator=g)
    rows = [(s - 1 + torch.arange(n)) % n_items + 1 for s, n in zip(starts.tolist(), lengths.tolist())]
    offsets = torch.zeros(users + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    return Sequences(items=torch.cat(rows).to(torch.int32), offsets=offsets, n_items=n_items)


def toy(data_dir, name: str = "toy", users: int = 30):
    """A small synthetic dataset file at data_dir/<name>/<name>.txt; -> its path."""
    from pipeline.synthetic import SyntheticConfig, write_synthetic

    return write_synthetic(SyntheticConfig(users=users, items=20), data_dir / name / f"{name}.txt")


def run_main(module, monkeypatch, *argv) -> None:
    """`module.main()` as `python -m module ARGV` would run it (arguments turned to strings)."""
    monkeypatch.setattr(sys, "argv", [module.__name__, *map(str, argv)])
    module.main()


def toy_with_titles(data_dir, users: int = 40):
    """`toy` with a title for each of its 20 items beside it (toy.items.tsv; three colour words); -> its path."""
    path = toy(data_dir, users=users)
    path.with_name("toy.items.tsv").write_text(
        "item_id\ttitle\n" + "".join(f"{i}\t{['red', 'blue', 'green'][i % 3]} thing {i}\n" for i in range(1, 21)))
    return path
