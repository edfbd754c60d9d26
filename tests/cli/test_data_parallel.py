"""`run all` trains the SFT data-parallel on the CPU, one rank process per thread (pipeline/data_parallel.py): the
same training as one process (dropout 0: the same loss), a rank's error as its one line, Ctrl-C with nothing left."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_experiment import TINY

from pipeline.concurrent import children_ignore_ctrl_c
from pipeline.data_parallel import ranks_for, stop
from pipeline.interrupt import Interrupted, Terminated
from pipeline.runner import Runner
from schemas.pipeline import PipelineConfig
from schemas.runtime import Runtime

EXACT = ["--set", "sft.lora_dropout=0", "--set", "sft.lm_dropout=0", "--set", "sft.precision=fp32"]


def run_all(cli, threads: int, jobs: int, *extra: str):
    return cli("--threads", str(threads), "run", "all", "--dataset", "toy", "--variants", "tslrec", *TINY, *EXACT,
               "--jobs", str(jobs), "--json", *extra)


def test_two_ranks_train_the_sft_of_one_process_and_leave_it_in_the_cache(cli, dirs, tmp_path, monkeypatch):
    assert cli("data", "synth", "--name", "toy", "--users", "40", "--items", "24").code == 0
    r = run_all(cli, 2, 2)
    assert r.code == 0 and "Traceback" not in r.err, r.err
    assert "training sft data-parallel: 2 processes x 1 torch threads (gloo)" in r.err
    ranks = json.loads(r.out)
    assert ranks["data_parallel"] == {"sft": 2} and ranks["upstream"]["sft"]["cached"]   # the parent: a hit
    again = json.loads(run_all(cli, 2, 2).out)
    assert again["data_parallel"] == {} and again["upstream"]["sft"]["key"] == ranks["upstream"]["sft"]["key"]
    monkeypatch.setenv("TSLREC_CACHE_DIR", str(tmp_path / "other-cache"))
    one = json.loads(run_all(cli, 2, 1).out)                                # --jobs 1: in this process
    assert one["data_parallel"] == {}
    a, b = (x["upstream"]["sft"]["result"] for x in (ranks, one))
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)    # summation order only
    assert a["valid_mse"] == pytest.approx(b["valid_mse"], rel=1e-4)


def sft_record(cache: Path) -> dict:
    return next(r for r in map(json.loads, map(Path.read_text, cache.glob("runs/*/*.json"))) if r["stage"] == "sft")


def test_a_killed_data_parallel_sft_resumes_to_the_uninterrupted_result(cli, dirs, tmp_path):
    """kill -9 after a checkpoint, the same command again: the artifacts of the run never killed (dropout on: the
    checkpoint holds each rank's generator)."""
    assert cli("data", "synth", "--name", "toy", "--users", "40", "--items", "24").code == 0
    root = Path(__file__).resolve().parents[2]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    argv = lambda cache: [sys.executable, str(root / "tslrec.py"), "--threads", "2", "--no-progress", "--cache-dir",  # noqa: E731
                          str(cache), "run", "all", "--dataset", "toy", "--variants", "tslrec", *TINY, "--set",
                          "sft.epochs=12", "--jobs", "2"]
    assert subprocess.run(argv(whole), capture_output=True).returncode == 0
    p = subprocess.Popen(argv(cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    while not list(cut.glob("checkpoints/*/sft.pt")):
        assert p.poll() is None, "the SFT ended before its first checkpoint"
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)                                      # the parent and both ranks
    p.wait()
    again = subprocess.run(argv(cut), capture_output=True, text=True)
    assert again.returncode == 0 and "resuming" in again.stderr, again.stderr
    digests = [{kind: out["digest"] for kind, out in sft_record(c)["outputs"].items()} for c in (cut, whole)]
    assert digests[0] == digests[1]


def test_a_ranks_error_is_its_one_line_and_ends_the_group(cli, dirs, tmp_path):
    assert cli("data", "synth", "--name", "toy", "--users", "40", "--items", "24").code == 0
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    t0 = time.monotonic()
    r = run_all(cli, 2, 2, "--set", f"sft.model={broken}")
    assert r.code != 0 and "Traceback" not in r.err and "connection closed" not in r.err.lower(), r.err
    assert r.err.rstrip().splitlines()[-1].startswith("error: Unrecognized model"), r.err
    assert time.monotonic() - t0 < 120                                     # the other rank did not hang


def test_ctrl_c_ends_every_rank_and_leaves_no_claim(dirs, cli):
    cache, _ = dirs
    assert cli("data", "synth", "--name", "toy", "--users", "60", "--items", "30").code == 0
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, str(root / "tslrec.py"), "--threads", "2", "--no-progress", "run", "all", "--dataset", "toy",
            *TINY, "--set", "sft.epochs=500", "--jobs", "2"]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = []
    while not any("computing sft" in line for line in lines):
        lines.append(p.stderr.readline())
        assert lines[-1], "".join(lines)
    time.sleep(3)
    os.killpg(p.pid, signal.SIGINT)                                        # a terminal's Ctrl-C: the whole group
    try:
        err = "".join(lines) + p.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:                                     # who still holds its stderr
        ps = subprocess.run(["ps", "-o", "pid,ppid,stat,etime,args", "-s", str(p.pid)], capture_output=True, text=True)
        p.kill()
        raise AssertionError(f"still running 60 s after Ctrl-C (who holds its stderr):\n{ps.stdout}\n{''.join(lines)}") from None
    assert p.returncode == 130 and "Traceback" not in err and err.rstrip().endswith("interrupted"), err
    assert not list(cache.rglob("*.owner")) and not list(cache.rglob("*.tmp*"))
    with pytest.raises(ProcessLookupError):                               # no rank left behind
        for _ in range(50):
            os.killpg(p.pid, 0)
            time.sleep(0.1)


@pytest.mark.parametrize("error", [Terminated(15), KeyboardInterrupt(), Interrupted(15), ValueError("bad")])
def test_a_leader_broadcasts_an_error_but_not_a_signal(tmp_path, error):
    """A follower the signal left in a training's all-reduce never meets the leader's broadcast: both hung."""
    r = Runner(Runtime(cache_dir=tmp_path, progress=False))
    told = []
    r.dist = SimpleNamespace(enabled=True, leader=True, broadcast=told.append)
    r._run = lambda *a, **k: (_ for _ in ()).throw(error)
    with pytest.raises(type(error)):
        r.run("data", PipelineConfig())
    assert [m.get("error") for m in told] == (["ValueError: bad"] if isinstance(error, ValueError) else [])


def deaf_to_sigterm():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)                          # as a rank inside a gloo collective
    time.sleep(120)


def test_stop_kills_a_rank_deaf_to_sigterm_even_when_a_second_signal_cuts_its_grace():
    p = multiprocessing.get_context("spawn").Process(target=deaf_to_sigterm)
    p.start()
    time.sleep(3)                                                          # its handler is set
    previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(Interrupted(2)))
    signal.setitimer(signal.ITIMER_REAL, 0.5)                             # the interrupt watchdog's retry, in the grace
    try:
        with pytest.raises(Interrupted):
            stop([p], grace_s=30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not p.is_alive() and p.exitcode == -signal.SIGKILL


SWALLOWED = """
import os, signal, time
from pipeline.concurrent import worker_signals
worker_signals()
class Finalized:
    def __del__(self):                      # Python swallows what is raised here, with a traceback
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(100000))                  # the handler runs in here
Finalized()
time.sleep(5)
print("still running")
"""


def test_a_sigterm_that_lands_in_a_finalizer_still_ends_a_rank_and_prints_nothing():
    root = Path(__file__).resolve().parents[2]
    p = subprocess.run([sys.executable, "-c", SWALLOWED], cwd=root, capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (143, "", "")


def runner(device: str = "cpu", threads: int = 2, force: bool = False, cached: bool = False):
    return SimpleNamespace(rt=Runtime(device=device, threads=threads, progress=False), force=force,
                           dist=SimpleNamespace(enabled=False), is_cached=lambda stage, cfg: cached)


def test_jobs_gives_the_sft_one_rank_per_thread():
    assert ranks_for(runner(), "sft", None, 2) == 2
    assert ranks_for(runner(threads=4), "sft", None, 3) == 3                 # --jobs: asked for
    assert ranks_for(runner(threads=2), "sft", None, 4) == 2                 # up to the threads
    assert ranks_for(runner(), "pretrain", None, 2) == 1         # the SFT only


def test_by_default_the_sft_is_data_parallel_when_a_training_took_long_enough():
    assert ranks_for(runner(), "sft", None, None, expected_s=60) == 2     # the pretrain took a minute
    assert ranks_for(runner(), "sft", None, None, expected_s=1) == 1      # toy data: a rank's start would cost more


@pytest.mark.parametrize("why", ["gpu", "force", "jobs=1", "cached", "one thread"])
def test_the_sft_stays_in_this_process(why):
    r = runner(device="cuda" if why == "gpu" else "cpu", force=why == "force", cached=why == "cached",
               threads=1 if why == "one thread" else 2)
    jobs = {"jobs=1": 1}.get(why, 2)
    assert ranks_for(r, "sft", None, jobs, expected_s=60) == 1


def sigint_disposition():
    return signal.getsignal(signal.SIGINT)


def test_a_spawned_child_ignores_ctrl_c_from_its_start():
    """A Ctrl-C that reaches a worker or rank while it still imports torch must not print a traceback."""
    ctx = multiprocessing.get_context("spawn")
    before = signal.getsignal(signal.SIGINT)
    with children_ignore_ctrl_c():
        pool = ctx.Pool(1)
    assert signal.getsignal(signal.SIGINT) is before                      # the parent's handler is back
    try:
        assert pool.apply(sigint_disposition) == signal.SIG_IGN
    finally:
        pool.terminate()
        pool.join()


def test_a_process_that_joined_a_group_ends_without_teardown(monkeypatch):
    """Under torchrun, main() ends through end_process (the interpreter's teardown aborted now and then)."""
    import pipeline.distributed as dist
    import tslrec

    ended = []
    monkeypatch.setattr(dist, "_joined", True)
    monkeypatch.setattr(dist, "end_process", lambda code: ended.append(code) or sys.exit(code))
    monkeypatch.setattr(sys, "argv", ["tslrec", "cache", "--help"])
    with pytest.raises(SystemExit):
        tslrec.main()
    assert ended == [0]


def test_end_process_flushes_and_exits_with_the_code():
    code = "import sys; from pipeline.distributed import end_process; sys.stdout.write('result'); end_process(3)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert (p.returncode, p.stdout) == (3, "result"), p.stderr
