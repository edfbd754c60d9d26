"""Benchmark: the paper's experiment (Base / CI / TSLRec) on one dataset, through `run all`.

Every stage goes through the runner and its cache, so a benchmark interrupted by a session's end
resumes where it stopped, and several of these (or `tslrec run train ...`) can run side by side
on one cache without doing the same work twice. Writes benchmarks/results/experiment-<dataset>.json
(command, commit, machine, versions, per-run and per-variant figures, t-tests, seconds per epoch)
and the report (Table 1/2, Fig. 4/5) into benchmarks/results/experiment-<dataset>/.

    nohup python benchmarks/experiment.py --dataset beauty --seeds 3 > experiment-beauty.log 2>&1 &
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.experiment import run_all  # noqa: E402
from pipeline.interrupt import Interrupted, handled_signals, unwound  # noqa: E402
from pipeline.overrides import PROFILES, build_config  # noqa: E402
from pipeline.progress import make_tracker  # noqa: E402
from pipeline.report import write_report  # noqa: E402
from pipeline.runner import Runner  # noqa: E402
from schemas.runtime import Runtime  # noqa: E402


def machine(threads: int) -> dict:
    """`torch_threads` is what the runner sets for every computed stage (`--threads`): read back from
    torch after a run of cache hits only, it would be torch's own default (the number of cores)."""
    import os

    return {"platform": platform.platform(), "cpu": platform.processor() or "unknown", "cores": os.cpu_count(),
            "torch_threads": threads, "load_avg_1m": os.getloadavg()[0]}


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def main() -> None:
    """SIGTERM (grid.py's hard deadline) and Ctrl-C unwind like `tslrec`'s: locks released, exit 128 + n."""
    with handled_signals():
        try:
            run()
        except Interrupted as e:
            unwound()
            print("interrupted", file=sys.stderr, flush=True)
            sys.exit(128 + e.signum)


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--variants", default="base,ci,tslrec")
    ap.add_argument("--backbones", default="sasrec")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda")
    ap.add_argument("--no-report", action="store_true", help="skip the tables and figures (the JSON only)")
    ap.add_argument("--reseed-chain", action="store_true",
                    help="seed s re-runs pretrain, group, sft and augment with seed s (writes experiment-<dataset>-chain.json)")
    ap.add_argument("--profile", choices=sorted(PROFILES), default=None,
                    help="the paper's training settings (lr 1e-4, batch 1024, dim 256; writes experiment-<dataset>-paper.json)")
    ap.add_argument("--tag", default="", help="suffix of the result names: experiment-<dataset><tag>.json")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="stage.field=value override")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    rt = Runtime(threads=args.threads, progress=True, device=args.device, tracker=make_tracker)
    cfg = build_config(sets=[f"data.dataset={args.dataset}", *args.sets], profile=args.profile)
    t0 = time.perf_counter()
    summary = run_all(Runner(rt), cfg, seeds=args.seeds, backbones=args.backbones.split(","),
                      variants=args.variants.split(","), reseed_chain=args.reseed_chain)
    default_tag = ("-paper" if args.profile else "") + ("-chain" if args.reseed_chain else "")
    name = f"experiment-{args.dataset}{args.tag or default_tag}"
    report = {"files": {}} if args.no_report else \
        write_report(rt.cache_dir, args.out / name, experiments=[Path(summary["experiment"])])
    result = {
        "benchmark": name,
        "profile": args.profile,   # the merge keeps a profile's runs apart from the defaults' (grid_merge.py)
        "command": "python " + " ".join(sys.argv),
        "git_commit": commit(),
        "machine": machine(args.threads),
        "versions": {p: version(p) for p in ("torch", "transformers", "peft", "scikit-learn")},
        "wall_seconds_this_invocation": round(time.perf_counter() - t0, 1),
        "note": "Stage wall times (computed runs) are in upstream.*.wall_s and per-run seconds_per_epoch; "
                "runs marked cached were computed by an earlier invocation or a parallel process on the same cache.",
        "report_files": report["files"],
        **{k: v for k, v in summary.items() if k not in ("table_tsv",)},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(summary["table_tsv"])


if __name__ == "__main__":
    main()
