"""Time `tslrec run all --dataset D` from a cold cache (the README's main job, or a variant of it), with each
stage's own seconds from the run's JSON record.

    python -m benchmarks.run_all_time --dataset beauty --set sft.item_text=title --threads 2 \
        --out benchmarks/results/run-all-beauty-title.json

The run is a subprocess in an empty cache (a temporary folder, or --cache-dir, which must be empty and is
kept). Nothing else should run on the machine meanwhile: the file records the load average before and after.
`--stop-at-limit` answers "within --limit-s?" in at most that time: a run still going then is interrupted, and
the file names the stages it finished (from the runner's `stored` lines) and the one it was in.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from benchmarks.common import ROOT, command, provenance, set_flags, write_json


STORED = re.compile(r"^stored\s+(\S+)\s+[0-9a-f]+ in ([0-9.]+)s")     # the runner's log line of a finished stage
COMPUTING = re.compile(r"^computing\s+(\S+)")


def time_run_all(dataset: str, threads: int, device: str, sets: list[str], cache_dir: Path | None,
                 stop_after_s: float | None = None, jobs: int | None = None) -> tuple[float, dict[str, Any] | None, str]:
    """(wall seconds, the run's --json record, its log) of `tslrec run all` in a cold cache. With stop_after_s
    the run is interrupted (SIGINT, as Ctrl-C) when it is still going then, and the record is None."""
    if cache_dir is not None and cache_dir.exists() and any(cache_dir.iterdir()):
        raise SystemExit(f"error: {cache_dir} is not empty (the timing needs a cold cache)")
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile("w+") as out:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(ROOT / "tslrec.py"), "--cache-dir", str(cache_dir or tmp),
                                 "--threads", str(threads), "--device", device, "--no-progress", "run", "all",
                                 "--dataset", dataset, *set_flags(sets), "--json",
                                 *(["--jobs", str(jobs)] if jobs is not None else [])],
                                stdout=out, stderr=subprocess.PIPE, text=True)
        log: list[str] = []
        tee = threading.Thread(target=_tee, args=(proc.stderr, log), daemon=True)   # progress stays visible
        tee.start()
        try:
            proc.wait(timeout=stop_after_s)
        except subprocess.TimeoutExpired:
            seconds = round(time.perf_counter() - t, 1)
            proc.send_signal(signal.SIGINT)
            proc.wait()
            tee.join()
            return seconds, None, "".join(log)
        seconds = round(time.perf_counter() - t, 1)
        tee.join()
        if proc.returncode != 0:
            raise SystemExit(f"error: run all exited with {proc.returncode}: {''.join(log[-1:]).strip()}")
        out.seek(0)
        return seconds, json.loads(out.read()), "".join(log)


def _tee(stream: IO[str], lines: list[str]) -> None:
    """Copy the run's stderr to ours, line by line, and keep it."""
    for line in stream:
        sys.stderr.write(line)
        lines.append(line)


def stages_from_log(log: str) -> tuple[dict[str, float], str | None]:
    """(seconds of each stage the log says was stored, the stage it was computing last and did not store)."""
    done, current = {}, None
    for line in log.splitlines():
        if m := STORED.match(line):
            done[m.group(1)] = float(m.group(2))
            current = None if current == m.group(1) else current
        elif m := COMPUTING.match(line):
            current = m.group(1)
    return done, current


def named_stages(record: dict[str, Any]) -> dict[str, tuple[float, dict[str, Any]]]:
    """{stage name: (wall seconds, result)} from `run all --json`: each upstream stage, then each training
    (named 'train BACKBONE/VARIANT/SEED'; a run's summary is its result)."""
    out = {s: (u["wall_s"], u.get("result") or {}) for s, u in (record.get("upstream") or {}).items()}
    for r in record.get("runs") or []:
        out[f"train {r.get('backbone')}/{r.get('variant')}/{r.get('seed')}"] = (r.get("wall_s"), r)
    return out


def stage_seconds(record: dict[str, Any]) -> dict[str, float]:
    """Each upstream stage's wall seconds, then each training's, from `run all --json`."""
    return {s: wall for s, (wall, _) in named_stages(record).items()}


def stage_epochs(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Epochs run and seconds per epoch of each stage that trains, from `run all --json`: a cold run's wall
    time moves with where early stopping ends as much as with the speed of an epoch."""
    return {s: {"epochs_run": r.get("epochs_run"), "seconds_per_epoch": r.get("seconds_per_epoch")}
            for s, (_, r) in named_stages(record).items() if r.get("seconds_per_epoch") is not None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="a --set for the run (KEY=VALUE)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=None, help="run all's --jobs (default: its own, 'auto')")
    ap.add_argument("--cache-dir", type=Path, default=None, help="an empty folder to run in (kept)")
    ap.add_argument("--limit-s", type=float, default=1200.0, help="the bound the file reports against (seconds)")
    ap.add_argument("--stop-at-limit", action="store_true",
                    help="interrupt the run at --limit-s: the file then says it was not within it, which stages "
                         "finished (their seconds) and which one was running")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    prov = provenance(args.device, args.threads)        # the commit that runs, not HEAD when the run ends
    seconds, record, log = time_run_all(args.dataset, args.threads, args.device, args.sets, args.cache_dir,
                                        args.limit_s if args.stop_at_limit else None, args.jobs)
    stopped = record is None
    done, current = stages_from_log(log)
    write_json(args.out, {"benchmark": "run-all-time", "command": command(), **prov,
                          "dataset": args.dataset, "sets": args.sets, "run_all_jobs": args.jobs, "wall_s": seconds, "limit_s": args.limit_s,
                          "within_limit": not stopped and seconds <= args.limit_s, "stopped_at_limit": stopped,
                          "stage_at_limit": current if stopped else None, "load_avg_1m_before": load_before,
                          "load_avg_1m_after": os.getloadavg()[0],
                          "stage_seconds": done if stopped else stage_seconds(record),
                          "stage_epochs": None if stopped else stage_epochs(record),
                          # train runs computed at once in worker processes (pipeline/concurrent.py); 0: one by one
                          "train_workers": None if stopped else record.get("train_workers"),
                          # stage -> rank processes that trained it (pipeline/data_parallel.py); {}: none
                          "data_parallel": None if stopped else record.get("data_parallel")})
    print(json.dumps({"wall_s": seconds, "within_limit": not stopped and seconds <= args.limit_s,
                      "stopped_at_limit": stopped}))


if __name__ == "__main__":
    main()
