"""Scaling benchmark: every stage's wall time and peak memory on synthetic data of growing size.

For each size, `tslrec data synth` writes U users and U x --items-per-user items (categories growing
with the items), then every stage runs once through the real CLI in its own process (its run record
carries `wall_s` and `peak_rss_mb`, measured by the runner): data, pretrain (one epoch), group, sft
(one epoch, a small LM), augment, train (variant tslrec, one epoch). Upstream results come from the
benchmark's private cache. Each stage that can be is first timed on --steps steps and extrapolated
(benchmarks/scaling_sample.py); if that estimate (or the growth from the smaller sizes, at least linear)
exceeds --budget-s (default 30 min), the estimate is the result ("extrapolated": true), else the stage
runs whole and the estimate is kept next to it ("estimate_s": how good the extrapolation is). The fitted
exponent per stage is the least-squares slope of log(seconds) (and log(peak RSS)) over log(users).
Writes benchmarks/results/scaling.json and scaling.png (log-log); progress goes to stderr.

    python -m benchmarks.scaling                                     # 10k, 100k, 1M users (hours)
    python -m benchmarks.scaling --users 1000,3000 --model tiny-llama --out /tmp/scaling.json   # check
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, command, provenance, set_flags, write_json
from benchmarks.scaling_sample import SAMPLED

STAGES = ["data", "pretrain", "group", "sft", "augment", "train"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def stage_sets(args: argparse.Namespace) -> list[str]:
    """One epoch everywhere, the chosen LM, tslrec as the downstream variant."""
    return ["pretrain.trainer.epochs=1", "train.trainer.epochs=1", "train.variant=tslrec", "sft.epochs=1",
            f"sft.model={args.model}", f"sft.batch_size={args.sft_batch_size}", f"group.k={args.k}",
            *args.set]


def sizes(args: argparse.Namespace) -> list[dict]:
    out = []
    for users in (int(u) for u in args.users.split(",")):
        items = max(20, int(users * args.items_per_user))
        out.append({"users": users, "items": items, "categories": max(6, items // 200)})
    return out


def env(args: argparse.Namespace) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1"}


def synth(size: dict, name: str, dirs: dict, args: argparse.Namespace) -> float:
    cmd = [sys.executable, str(ROOT / "tslrec.py"), "--data-dir", str(dirs["data"]), "data", "synth", "--name", name,
           "--users", str(size["users"]), "--items", str(size["items"]), "--categories", str(size["categories"])]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env(args))
    return time.perf_counter() - t0


def run_whole(stage: str, name: str, dirs: dict, args: argparse.Namespace) -> dict:
    """The stage through the CLI; -> its record's timing and memory."""
    cmd = [sys.executable, str(ROOT / "tslrec.py"), "--cache-dir", str(dirs["cache"]), "--data-dir", str(dirs["data"]),
           "--device", args.device, "--threads", str(args.threads), "--no-progress", "-q", "run", stage, "-d", name,
           *set_flags(stage_sets(args)), "--cached-inputs", "--force", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env(args))
    if p.returncode != 0:
        raise RuntimeError(f"{stage} failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
    rec = json.loads(p.stdout)
    return {"seconds": rec["wall_s"], "peak_rss_mb": rec["peak_rss_mb"], "peak_cuda_mb": rec["peak_cuda_mb"],
            "extrapolated": False}


def run_sampled(stage: str, name: str, dirs: dict, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.scaling_sample", "--stage", stage, "--steps", str(args.steps),
           "--eval-batches", str(args.eval_batches),
           "--dataset", name, "--cache-dir", str(dirs["cache"]), "--data-dir", str(dirs["data"]), "--device", args.device,
           "--threads", str(args.threads), "--", *stage_sets(args)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env(args), cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(f"{stage} (sampled) failed: {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y over log x (None with fewer than two usable points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len(pts) < 2:
        return None
    mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    var = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / var if var else None


def predicted_seconds(stage: str, users: int, done: list[dict]) -> float | None:
    """Time at `users` from the smaller sizes: last time x growth^max(1, fitted exponent)."""
    pts = [(d["users"], d["stages"][stage]["seconds"]) for d in done if stage in d["stages"]]
    if not pts:
        return None
    k = slope([p[0] for p in pts], [p[1] for p in pts])
    u, t = pts[-1]
    return t * (users / u) ** max(1.0, k or 1.0)


def exponents(results: list[dict]) -> dict:
    out = {}
    for stage in STAGES:
        rows = [r for r in results if stage in r["stages"]]
        us = [r["users"] for r in rows]
        out[stage] = {"seconds": slope(us, [r["stages"][stage]["seconds"] for r in rows]),
                      "peak_rss_mb": slope(us, [r["stages"][stage]["peak_rss_mb"] for r in rows])}
    return out


def figure(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for stage in STAGES:
        rows = [r for r in report["sizes"] if stage in r["stages"]]
        if not rows:
            continue
        for ax, field in zip(axes, ("seconds", "peak_rss_mb")):
            xs = [r["users"] for r in rows]
            ys = [r["stages"][stage][field] for r in rows]
            k = report["exponents"][stage][field]
            line, = ax.plot(xs, ys, "-", label=f"{stage} (slope {k:.2f})" if k is not None else stage)
            for x, y, r in zip(xs, ys, rows):
                hollow = r["stages"][stage]["extrapolated"]
                ax.plot([x], [y], "o", color=line.get_color(), markerfacecolor="none" if hollow else line.get_color())
    for ax, title in zip(axes, ("wall seconds (hollow: extrapolated)", "peak RSS (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("users")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"tslrec scaling, sft model {report['model']}, {report['machine'].get('cpu', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def measure(size: dict, done: list[dict], dirs: dict, args: argparse.Namespace) -> dict:
    name = f"synth-{size['users']}"
    row = {**size, "synth_seconds": round(synth(size, name, dirs, args), 3), "stages": {}}
    log(f"{name}: {size['items']} items, generated in {row['synth_seconds']:.1f}s")
    for stage in STAGES:
        res = run_sampled(stage, name, dirs, args) if stage in SAMPLED else None
        growth = predicted_seconds(stage, size["users"], done) or 0.0
        if res is None or not (args.sample_all or max(res["seconds"], growth) > args.budget_s):
            estimate = res
            res = run_whole(stage, name, dirs, args)      # --force: replaces the sampled stand-in
            if estimate is not None:
                res["estimate_s"] = round(estimate["seconds"], 3)
        row["stages"][stage] = res
        how = f"extrapolated from {res['steps_measured']}/{res['steps_total']} steps" if res["extrapolated"] else "whole"
        log(f"  {stage:<8} {res['seconds']:10.1f}s  peak RSS {res['peak_rss_mb']:8.0f} MiB  ({how})")
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", default="10000,100000,1000000", help="comma-separated user counts")
    ap.add_argument("--items-per-user", type=float, default=0.1, help="items = users x this")
    ap.add_argument("--model", default="minilm-l6", help="sft language model (a small one)")
    ap.add_argument("--sft-batch-size", type=int, default=32)
    ap.add_argument("--k", type=int, default=16, help="groups K")
    ap.add_argument("--set", action="append", default=[], help="more stage.field=value overrides")
    ap.add_argument("--budget-s", type=float, default=1800.0, help="longer predicted stages are sampled")
    ap.add_argument("--steps", type=int, default=20, help="training steps a sampled stage is timed on")
    ap.add_argument("--eval-batches", type=int, default=2, help="evaluation batches a sampled stage is timed on")
    ap.add_argument("--sample-all", action="store_true", help="keep every estimate, run no samplable stage whole (a quick check)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work-dir", type=Path, default=None, help="data and private cache (default: a temp dir, removed)")
    ap.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="tslrec-scaling-"))
    dirs = {"data": work / "data", "cache": work / "cache"}
    done: list[dict] = []
    try:
        for size in sizes(args):
            done.append(measure(size, done, dirs, args))
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    report = {"command": command(argv), **provenance(args.device, args.threads), "model": args.model,
              "device": args.device, "threads": args.threads, "budget_s": args.budget_s, "steps": args.steps,
              "eval_batches": args.eval_batches,
              "sets": stage_sets(args), "sizes": done, "exponents": exponents(done),
              "wall_seconds": round(time.perf_counter() - t0, 1)}
    write_json(args.out, report)
    figure(report, args.out.with_suffix(".png"))
    log(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    print(json.dumps(report["exponents"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
