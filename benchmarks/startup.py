"""Start-up time of the quick commands: `tslrec --help`, `--version`, `cache path`, `cache ls`, `config`.

Each command runs as a fresh subprocess (the real entry point, `python tslrec.py ...`) `--repeats`
times after one warm-up run (file cache); the median wall time is reported, with min and max. The
issue asks for under 0.5 s; before torch was imported lazily every command took about 2 s.

    python benchmarks/startup.py                 # writes benchmarks/results/startup.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = [["--help"], ["--version"], ["cache", "path"], ["cache", "ls"], ["config"]]
LIMIT_S = 0.5


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def time_command(args: list[str], repeats: int, env: dict[str, str]) -> dict:
    cmd = [sys.executable, str(ROOT / "tslrec.py"), *args]
    subprocess.run(cmd, env=env, capture_output=True, check=True)   # warm-up: file cache, .pyc
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, check=True)
        walls.append(time.perf_counter() - t0)
    median = statistics.median(walls)
    return {"command": "tslrec " + " ".join(args), "median_s": round(median, 4), "min_s": round(min(walls), 4),
            "max_s": round(max(walls), 4), "runs_s": [round(w, 4) for w in walls], "under_limit": median < LIMIT_S}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "startup.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TSLREC_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        rows = [time_command(c, args.repeats, env) for c in COMMANDS]
    for r in rows:
        print(f"{r['command']:<22} median {r['median_s']:.3f} s  (min {r['min_s']:.3f}, max {r['max_s']:.3f})", file=sys.stderr)
    result = {"benchmark": "startup", "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "git_commit": git_commit(), "machine": machine(), "repeats": args.repeats, "limit_s": LIMIT_S,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commands": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
