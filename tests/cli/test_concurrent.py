"""`run all` trains its independent train runs at once in worker processes (pipeline/concurrent.py): the same
runs, keys and metrics as one after another; 'auto' only where it pays."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from test_experiment import TINY

from pipeline.concurrent import MIN_RUN_SECONDS, plan
from schemas.runtime import Runtime


def run_all(cli, threads: int, *extra: str) -> dict:
    r = cli("--threads", str(threads), "run", "all", "--dataset", "toy", *TINY, "--json", *extra)
    assert r.code == 0, r.err
    return {"summary": json.loads(r.out), "err": r.err}


def test_two_workers_give_the_runs_of_one_after_another(cli, dirs, tmp_path, monkeypatch):
    assert cli("data", "synth", "--name", "toy", "--users", "40", "--items", "24").code == 0
    # The SFT first, in one process: `--jobs 2` would train it data-parallel (other bits, so other train keys)
    assert cli("--threads", "1", "run", "sft", "--dataset", "toy", *TINY).code == 0
    workers = run_all(cli, 2, "--jobs", "2")
    assert "computing 2 train runs at once: 2 processes x 1 torch threads" in workers["err"]
    monkeypatch.setenv("TSLREC_CACHE_DIR", str(tmp_path / "other-cache"))
    serial = run_all(cli, 1, "--jobs", "1")
    assert "at once" not in serial["err"]
    assert (workers["summary"]["train_workers"], serial["summary"]["train_workers"]) == (2, 0)
    by = {name: {(r["variant"], r["seed"]): r for r in got["summary"]["runs"]} for name, got in
          (("workers", workers), ("serial", serial))}
    assert by["workers"].keys() == by["serial"].keys() == {("base", 42), ("ci", 42), ("tslrec", 42)}
    for run, w in by["workers"].items():
        s = by["serial"][run]
        assert w["key"] == s["key"]                              # the same runs ...
        assert w["test"] == pytest.approx(s["test"], abs=1e-6)   # ... computed alike (one thread each)
        assert w["cached"]          # the workers' runs, and base's (the pretrain, computed with the SFT), in the cache


def runner(device: str = "cpu", threads: int | None = 4, force: bool = False, cached: set[str] = frozenset()):
    return SimpleNamespace(rt=Runtime(device=device, threads=threads, progress=False), force=force,
                           dist=SimpleNamespace(enabled=False), is_cached=lambda stage, cfg: cfg in cached)


def test_auto_splits_the_threads_between_the_uncached_runs_of_long_trainings():
    long = MIN_RUN_SECONDS
    p = plan(runner(cached={"b"}), "train", ["a", "b", "c"], None, expected_s=long)
    assert (p.todo, p.workers, p.threads) == (["a", "c"], 2, 2)
    assert plan(runner(threads=2), "train", ["a", "b", "c"], None, expected_s=long).workers == 2   # up to the threads
    assert plan(runner(threads=5), "train", ["a", "b"], None, expected_s=long).threads == 2
    assert plan(runner(), "train", ["a", "b"], 3, expected_s=0).workers == 2                   # --jobs: asked for


@pytest.mark.parametrize("why", ["short", "gpu", "force", "jobs=1"])
def test_runs_stay_one_after_another(why):
    r = runner(device="cuda" if why == "gpu" else "cpu", force=why == "force")
    jobs = 1 if why == "jobs=1" else None
    assert plan(r, "train", ["a", "b"], jobs, expected_s=1.0 if why == "short" else MIN_RUN_SECONDS).workers == 1


def test_ctrl_c_stops_the_workers_without_tracebacks_and_a_rerun_resumes(dirs, cli):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: one line, every process gone, no claim left to
    report as stale, and the rerun resumes the workers' runs from their last epoch."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    cache, _ = dirs
    assert cli("data", "synth", "--name", "toy", "--users", "60", "--items", "30").code == 0
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, str(root / "tslrec.py"), "--threads", "2", "--no-progress", "run", "all", "--dataset", "toy",
            *TINY, "--set", "train.trainer.epochs=500", "--set", "train.trainer.patience=500", "--jobs", "2"]
    def start() -> subprocess.Popen:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def read_until(p: subprocess.Popen, phrase: str, count: int) -> str:
        lines = []
        while sum(phrase in line for line in lines) < count:
            lines.append(p.stderr.readline())
            assert lines[-1], "".join(lines)                 # EOF before the phrase: it ended on its own
        return "".join(lines)

    p = start()
    seen = read_until(p, "computing train", 2)
    time.sleep(3)                                          # an epoch or more, so there is a resume point
    os.killpg(p.pid, signal.SIGINT)
    err = seen + p.communicate(timeout=60)[1]
    assert p.returncode != 0 and "Traceback" not in err and err.rstrip().endswith("interrupted"), err
    assert not list(cache.rglob("*.owner"))
    again = start()
    seen = read_until(again, "resuming  train", 2)         # each worker's run goes on from its last epoch
    os.killpg(again.pid, signal.SIGINT)
    again.communicate(timeout=60)
    assert "stale lock" not in seen


def test_a_worker_takes_the_threads_of_runs_that_ended(monkeypatch):
    import multiprocessing

    import torch

    from pipeline import concurrent

    left = multiprocessing.get_context("spawn").Value("i", 3)              # 3 runs on 2 workers sharing 4 threads
    monkeypatch.setattr(concurrent, "_shared", {"left": left, "workers": 2, "threads": 4})
    with concurrent.Rebalancing("train", 5, show=False) as bar:
        bar.advance()
        assert torch.get_num_threads() == 2
        left.value = 2                                                     # one run ended: still two going
        bar.advance()
        assert torch.get_num_threads() == 2
        left.value = 1                                                     # this one is the last
        bar.advance(loss=1.0)
        assert torch.get_num_threads() == 4
