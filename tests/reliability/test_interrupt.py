"""A signal stops `tslrec` even when the code it lands in swallows it, and no interrupted write
leaves a temp file behind (the cache-level signal test is in test_reliability_cache.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stages.core.atomic import temp_beside, write_atomically

ROOT = Path(__file__).resolve().parents[2]

# tslrec.main() around an "app" whose catch-all eats the first `lost` exceptions the handler raises
SWALLOWER = """
import sys, time, tslrec
from pipeline import interrupt
interrupt.RETRY_S, interrupt.FORCE_S = 0.5, 5.0
lost = int(sys.argv[1])
def app(**kw):
    global lost
    while True:
        try:                         # the signal lands in here, inside the try
            print("ready", file=sys.stderr, flush=True)
            while True:
                time.sleep(0.02)
        except BaseException:
            if lost == 0:
                raise
            lost -= 1
tslrec.app = app
tslrec.main()
"""


def interrupt(lost: int) -> tuple[int, str, float]:
    p = subprocess.Popen([sys.executable, "-c", SWALLOWER, str(lost)], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stderr.readline().strip() == "ready"
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    return p.returncode, err, time.monotonic() - t0


def test_a_swallowed_interrupt_is_raised_again_and_unwinds():
    rc, err, seconds = interrupt(lost=1)
    assert rc == 143 and err.strip().splitlines()[-1] == "interrupted", err
    assert 0.4 < seconds < 4.5            # the retry at 0.5 s, not the forced exit at 5 s


def test_an_interrupt_that_is_always_swallowed_still_ends_the_process():
    rc, err, seconds = interrupt(lost=10**9)
    assert rc == 143 and "forced" in err.strip().splitlines()[-1], err
    assert 4.9 < seconds < 30


@pytest.mark.parametrize("stop", [KeyboardInterrupt, OSError])
def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, stop):
    target = tmp_path / "a.json"
    target.write_text("old")

    def half_then_stop(tmp: Path) -> None:
        tmp.write_text("ne")
        raise stop()

    with pytest.raises(stop):
        write_atomically(target, half_then_stop)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    write_atomically(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_the_temp_name_is_not_created_before_the_write_and_is_fresh_each_time(tmp_path):
    a, b = temp_beside(tmp_path / "x.pt"), temp_beside(tmp_path / "x.pt")
    assert a != b and not a.exists() and a.parent == tmp_path and a.name.startswith(".tmp-") and a.suffix == ".pt"


def test_sigterm_unwinds_a_benchmark_and_leaves_no_lock_owner(tmp_path):
    """The grid's hard deadline SIGTERMs `benchmarks.table2`: it exits 143 like `tslrec`, with its
    cache lock's .owner file removed on the way (Python's default SIGTERM would leave it behind)."""
    from pipeline.synthetic import SyntheticConfig, write_synthetic

    cache, data = tmp_path / "cache", tmp_path / "data"
    write_synthetic(SyntheticConfig(users=40, items=24), data / "toy" / "toy.txt")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TSLREC_CACHE_DIR": str(cache), "TSLREC_DATA_DIR": str(data),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "benchmarks.table2", "--dataset", "toy", "--seeds", "1", "--no-report",
                          "--out", str(tmp_path / "results"), "--set", "pretrain.trainer.epochs=100000",
                          "--set", "pretrain.trainer.patience=100000", "--set", "pretrain.backbone.dim=8"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(cache.glob("checkpoints/*/fit-*.pt")) and p.poll() is None and time.time() < deadline:
        time.sleep(0.1)                                            # inside pretrain's epoch loop, lock held
    assert list(cache.glob("runs/*/*.owner")), "the pretrain lock's owner file should exist while it runs"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and err.strip().splitlines()[-1] == "interrupted", err[-2000:]
    assert not list(cache.glob("runs/*/*.owner")) and not list(cache.rglob(".tmp*"))


def test_grid_stop_terminates_then_kills_what_ignores_sigterm():
    from benchmarks.grid import stop

    ignores = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    polite = "import sys, time; print('ready', flush=True); time.sleep(60)"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for code in (ignores, polite)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    stop(procs, grace_s=1.0)
    assert [p.returncode for p in procs] == [-signal.SIGKILL, -signal.SIGTERM]
    assert time.monotonic() - t0 < 10
