"""Time `tslrec run all --dataset D` from a cold cache (the README's main job, or a variant of it), with each
stage's own seconds from the run's JSON record.

    python -m benchmarks.run_all_time --dataset beauty --set sft.item_text=title --threads 2 \
        --out benchmarks/results/run-all-beauty-title.json

The run is a subprocess in an empty cache (a temporary folder, or --cache-dir, which must be empty and is
kept). Nothing else should run on the machine meanwhile: the file records the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, command, provenance, write_json


def time_run_all(dataset: str, threads: int, device: str, sets: list[str], cache_dir: Path | None
                 ) -> tuple[float, dict[str, Any]]:
    """(wall seconds, the run's --json record) of `tslrec run all` in a cold cache."""
    if cache_dir is not None and cache_dir.exists() and any(cache_dir.iterdir()):
        raise SystemExit(f"error: {cache_dir} is not empty (the timing needs a cold cache)")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "tslrec.py"), "--cache-dir", str(cache_dir or tmp),
                               "--threads", str(threads), "--device", device, "--no-progress", "run", "all",
                               "--dataset", dataset, *[a for s in sets for a in ("--set", s)], "--json"],
                              check=True, stdout=subprocess.PIPE, text=True)
        return round(time.perf_counter() - t, 1), json.loads(done.stdout)


def stage_seconds(record: dict[str, Any]) -> dict[str, float]:
    """Each upstream stage's wall seconds, then each training's, from `run all --json`."""
    out = {s: u["wall_s"] for s, u in (record.get("upstream") or {}).items()}
    for r in record.get("runs") or []:
        out[f"train {r.get('backbone')}/{r.get('variant')}/{r.get('seed')}"] = r.get("wall_s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="a --set for the run (KEY=VALUE)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache-dir", type=Path, default=None, help="an empty folder to run in (kept)")
    ap.add_argument("--limit-s", type=float, default=1200.0, help="the bound the file reports against (seconds)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    seconds, record = time_run_all(args.dataset, args.threads, args.device, args.sets, args.cache_dir)
    write_json(args.out, {"benchmark": "run-all-time", "command": command(), **provenance(args.device, args.threads),
                          "dataset": args.dataset, "sets": args.sets, "wall_s": seconds, "limit_s": args.limit_s,
                          "within_limit": seconds <= args.limit_s, "load_avg_1m_before": load_before,
                          "load_avg_1m_after": os.getloadavg()[0], "stage_seconds": stage_seconds(record)})
    print(json.dumps({"wall_s": seconds, "within_limit": seconds <= args.limit_s}))


if __name__ == "__main__":
    main()
