"""SIGINT / SIGTERM as an exception that unwinds, for every entry point (`tslrec`, the benchmarks).

Python's default SIGTERM ends the process on the spot: no `finally` runs, so a cache lock's
.owner file and a half-written temp file stay behind. Under `handled_signals()` both signals raise
`Interrupted` instead, which unwinds to the entry point like any exception (locks released, temp
files removed on the way); the entry point catches it, calls `unwound()` and exits 128 + signum.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any, Iterator


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised by our handler. Not a KeyboardInterrupt (typer turns that into
    Exit(130) before main sees it) and not an Exception (no `except Exception` swallows it): it
    unwinds to the entry point, so locks are released and temp files removed on the way."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# A signal's exception lands at whatever Python line runs next. Code that swallows it there (a
# finalizer, a library's catch-all) loses it and the run goes on: CI once saw `tslrec` still
# training 60 s after a SIGINT. So the first signal also starts a watchdog: if the entry point has
# not unwound after RETRY_S it raises the signal again (lands elsewhere), and after FORCE_S it ends
# the process (flock'd locks die with it; a left .owner file is reported and taken over by the next run).
RETRY_S, FORCE_S = 3.0, 20.0
_unwound = threading.Event()          # set once the entry point has caught Interrupted: cleanup is done
_watchdog_started = threading.Event()


class Terminated(SystemExit):
    """A worker's or rank's SIGTERM (pipeline/concurrent.worker_signals): it exits 128 + signum like the
    entry point, unwinding on the way as Interrupted does."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def is_signal(e: BaseException) -> bool:
    """Whether `e` is a signal unwinding the process (ours, Ctrl-C's KeyboardInterrupt, a worker's SIGTERM),
    not an error of the computation."""
    return isinstance(e, (Interrupted, KeyboardInterrupt, Terminated))


def unwound() -> None:
    """The entry point caught Interrupted: the watchdog lets the exit finish (for up to FORCE_S)."""
    _unwound.set()


def _raise_interrupted(signum: int, frame: Any) -> None:
    if not _watchdog_started.is_set():
        _watchdog_started.set()
        threading.Thread(target=_watchdog, args=(signum,), daemon=True, name="interrupt-watchdog").start()
    raise Interrupted(signum)


def _watchdog(signum: int) -> None:
    if not _unwound.wait(RETRY_S):
        signal.raise_signal(signum)                    # the first one was lost: ask again
    if _unwound.wait(max(0.0, FORCE_S - RETRY_S)):
        time.sleep(FORCE_S)                            # unwound: give the exit itself as long again
    else:
        os.write(2, b"interrupted (forced: the run did not stop)\n")
    os._exit(128 + signum)


def _raise_again(unraisable: Any) -> None:
    """sys.unraisablehook: a signal's exception that landed in a finalizer or a weakref callback (seen: the
    import system's module-lock callback in a rank), where Python swallows it with an 'Exception ignored ...
    Traceback' on stderr, is raised again as the signal: it lands on a line after, silently. From another
    thread, a moment later: raised here, its handler would run inside this hook, and be swallowed again."""
    if isinstance(unraisable.exc_value, (Interrupted, Terminated)):
        again = threading.Timer(0.01, os.kill, (os.getpid(), unraisable.exc_value.signum))
        again.daemon = True
        again.start()
        return
    sys.__unraisablehook__(unraisable)


def raise_swallowed_signals_again() -> None:
    sys.unraisablehook = _raise_again


@contextlib.contextmanager
def handled_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted inside the block; the previous handlers come back after."""
    raise_swallowed_signals_again()
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
