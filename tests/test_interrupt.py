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

from stages.atomic import temp_beside, write_atomically

ROOT = Path(__file__).resolve().parents[1]

# tslrec.main() around an "app" whose catch-all eats the first `lost` exceptions the handler raises
SWALLOWER = """
import sys, time, tslrec
tslrec.INTERRUPT_RETRY_S, tslrec.INTERRUPT_FORCE_S = 0.5, 5.0
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
