"""Blocks for speed and growth: seconds per epoch in fp32 and bf16, the main job end to end, bf16's quality,
cost on synthetic data of growing size, and start-up of the light commands."""
from __future__ import annotations

import re
from typing import Any, Callable

from .load import Results, caption
from .tables import BACKBONE_NAMES, VARIANTS, f4, pm, secs, table


def _speedup(fp32: float, bf16: float) -> str:
    ratio = fp32 / bf16
    if ratio >= 1:
        return f"{ratio:.2f}x faster"
    return f"{1 / ratio:.2f}x slower" if ratio > 0.1 else f"{1 / ratio:.1f}x slower"


def speed_block(name: str, title: str, last_epoch: bool = False) -> Callable[[Results], str]:
    """benchmarks/speed.py: seconds per epoch in fp32 and bf16 per backbone, throughput against the measured peak.

    last_epoch: show each precision's last timed epoch instead of the file's median (for runs whose timed
    epochs include a warm-up)."""
    def block(r: Results) -> str:
        d = r(name)
        peak = d.get("peak_gflops", {})

        def seconds(x: dict[str, Any]) -> float:
            return x["epochs_timed"][-1] if last_epoch and x.get("epochs_timed") else x["seconds_per_epoch"]

        rows = []
        for b, v in d["variants"].items():
            fp32, bf16 = v.get("fp32"), v.get("bf16")
            cells = []
            for x in (fp32, bf16):
                if x:
                    gf = x["flops_per_epoch"] / seconds(x) / 1e9
                    cells.append(f"{secs(seconds(x))} ({gf:,.0f} GFLOP/s, {gf / peak[x['dtype']]:.0%} of peak)"
                                 if peak.get(x.get("dtype")) else secs(seconds(x)))
                else:
                    cells.append("-")
            default = d["backbones"].get(b, {})
            rows.append([BACKBONE_NAMES.get(b, b)] + cells +
                        [_speedup(seconds(fp32), seconds(bf16)) if fp32 and bf16 else "-",
                         f"{secs(default.get('seconds_per_eval'))} (batch {default.get('eval_batch_size')})"])
        run_all = d.get("run_all_seconds")
        extra = f" `tslrec run all --dataset {d['dataset']}`, cold cache: {secs(run_all)}." if isinstance(run_all, (int, float)) else ""
        timing = "the last of the timed epochs (the first included warm-up)" if last_epoch else \
            "median of the timed epochs after an untimed one"
        return (f"**{title}** ({d['dataset']}: {d['users']:,} users, {d['items']:,} items, {d['steps_per_epoch']} steps per epoch; "
                f"{d['threads']} thread{'s' if d['threads'] != 1 else ''}; {timing})\n\n" +
                table(["backbone", "fp32 s/epoch", "bf16 s/epoch", "bf16 against fp32", "full evaluation"], rows) + "\n\n" +
                f"Peak: the matmul throughput at the loss's shapes, measured in the same run (fp32 {peak.get('fp32', 0):,.1f}, "
                f"bf16 {peak.get('bf16', 0):,.1f} GFLOP/s); FLOPs counted analytically.{extra} " + caption(r, name) + "\n")
    return block


def main_job_block(avx2: str, bf16_speed: str, gpu_speed: str, gpu_check: str) -> Callable[[Results], str]:
    """`tslrec run all --dataset beauty` from a cold cache, per machine, with the stage seconds where recorded."""
    def block(r: Results) -> str:
        stages = ["data", "pretrain", "group", "sft", "augment", "train ci", "train tslrec"]
        rows = []
        d = r(avx2)
        got = [re.match(r"stored\s+(\w+)\s+\w+ in ([\d.]+)s", line) for line in d["stage_log"]]
        times = [float(m.group(2)) for m in got if m]
        runs = {x["variant"]: x["test"]["ndcg10"] for x in d["record"]["runs"]}
        rows.append([f"`{avx2}`", secs(d["wall_s"])] + [secs(t) for t in times] +
                     [" / ".join(f4(runs.get(v)) for v in VARIANTS)])
        for n in (bf16_speed, gpu_speed):
            x = r(n)
            rows.append([f"`{n}`", secs(x["run_all_seconds"])] + ["-"] * len(stages) + ["-"])
        g = r(gpu_check)
        st = g["stages"]
        runs = {x["variant"]: x["test"]["ndcg10"] for x in g["runs"]}
        rows.append([f"`{gpu_check}`", secs(g["wall_s_command"])] + [secs(st[s]["wall_s"]) if s in st else "-" for s in stages] +
                    [" / ".join(f4(runs.get(v)) for v in VARIANTS)])
        return ("**The main job, `tslrec run all --dataset beauty`, from a cold cache** (defaults; seed 42)\n\n" +
                table(["file", "total"] + stages + ["test NDCG@10 base / ci / tslrec"], rows) + "\n\n" +
                caption(r, avx2, bf16_speed, gpu_speed, gpu_check, command=False) + "\n")
    return block


def quality_bf16_block(name: str) -> Callable[[Results], str]:
    def block(r: Results) -> str:
        d = r(name)
        s = d["summary"][0]
        ref = d["fp32_reference"]
        rows = [["bf16 (loss and backbone)", ", ".join(f"{v:.4f}" for v in s["per_seed"]["ndcg10"]),
                 pm(s["mean"]["ndcg10"], s["std"]["ndcg10"]), pm(s["mean"]["hr10"], s["std"]["hr10"])],
                ["fp32 (" + ref["source"].split(" ")[0].split("/")[-1] + ")", ", ".join(f"{v:.4f}" for v in ref["test_ndcg10"]),
                 pm(*ref["test_ndcg10_mean_std"]), pm(*ref["test_hr10_mean_std"])]]
        return ("**bf16 against fp32, SASRec on Beauty** (3 seeds, test, history masked)\n\n" +
                table(["precision", "test NDCG@10 per seed", "NDCG@10", "HR@10"], rows) + "\n\n" + caption(r, name) + "\n")
    return block


# ---------------------------------------------------------------- growth

def scaling_block(name: str) -> Callable[[Results], str]:
    def block(r: Results) -> str:
        d = r(name)
        stages = list(d["sizes"][0]["stages"])
        rows = []
        for size in d["sizes"]:
            cells = []
            for s in stages:
                x = size["stages"][s]
                cells.append(f"{secs(x['seconds'])}{'*' if x.get('extrapolated') else ''}, {x['peak_rss_mb'] / 1024:.1f} GiB")
            rows.append([f"{size['users']:,} / {size['items']:,}"] + cells)
        rows.append(["growth exponent (seconds over users)"] + [f"{d['exponents'][s]['seconds']:.2f}" for s in stages])
        return ("**Seconds and peak RSS per stage on synthetic data** (`data synth`, items = users / 10; one epoch per training; "
                f"{d['threads']} thread; * timed on {d['steps']} steps and extrapolated)\n\n" +
                table(["users / items"] + stages, rows) + "\n\n" + caption(r, name) +
                " Wall times are pessimistic: other jobs shared the 2 cores.\n")
    return block


def startup_block(name: str) -> Callable[[Results], str]:
    def block(r: Results) -> str:
        d = r(name)
        base = {c["command"]: c for c in d.get("baseline", {}).get("commands", [])}
        rows = []
        for c in d["commands"]:
            b = base.get(c["command"], {})
            rows.append([f"`{c['command']}`", f"{c['median_s']:.2f} s ({c['median_cpu_s']:.2f} s CPU)",
                         "unsupported" if b.get("unsupported") else f"{b['median_s']:.2f} s ({b['median_cpu_s']:.2f} s CPU)" if b else "-"])
        bc = d.get("baseline", {}).get("git_commit", "")[:7]
        return (f"**Start-up of light commands** (each a fresh process, median of {d['repeats']} after a warm-up; both trees "
                f"timed alternately under the same load)\n\n" +
                table(["command", "median wall (CPU)", f"baseline tree at {bc}"], rows) + "\n\n" + caption(r, name) + "\n")
    return block
