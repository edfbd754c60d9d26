"""The paper's experiment (Table 2: Base / CI / TSLRec) on one dataset, through `run all`'s own code.

Every stage goes through the runner and its cache, so a benchmark interrupted by a session's end
resumes where it stopped, and several of these (or `tslrec run train ...`) can run side by side
on one cache without doing the same work twice. Writes benchmarks/results/experiment-<dataset>.json
(command, commit, machine, versions, per-run and per-variant figures, t-tests, seconds per epoch)
and the report (Table 1/2, Fig. 4/5) into benchmarks/results/experiment-<dataset>/.

    nohup python -m benchmarks.table2 --dataset beauty --seeds 3 > experiment-beauty.log 2>&1 &
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, command, provenance, write_json
from pipeline.experiment import run_all
from pipeline.interrupt import Interrupted, handled_signals, unwound
from pipeline.overrides import PROFILES, build_config
from pipeline.progress import make_tracker
from pipeline.report import write_report
from pipeline.runner import Runner
from schemas.names import VARIANTS
from schemas.runtime import Runtime


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
    ap.add_argument("--variants", default=",".join(VARIANTS))
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
    ap.add_argument("--out", type=Path, default=RESULTS)
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
        "command": command(),
        # `torch_threads` is what the runner sets for every computed stage (`--threads`): read back from torch
        # after a run of cache hits only, it would be torch's own default (the number of cores)
        **provenance(args.device, args.threads),
        "wall_seconds_this_invocation": round(time.perf_counter() - t0, 1),
        "note": "Stage wall times (computed runs) are in upstream.*.wall_s and per-run seconds_per_epoch; "
                "runs marked cached were computed by an earlier invocation or a parallel process on the same cache.",
        "report_files": report["files"],
        **{k: v for k, v in summary.items() if k not in ("table_tsv",)},
    }
    write_json(args.out / f"{name}.json", result)
    print(summary["table_tsv"])


if __name__ == "__main__":
    main()
