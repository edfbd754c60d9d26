"""Run many benchmark jobs side by side on one cache until a deadline, then merge what finished.

A lent GPU runs one small backbone far below its capacity (Beauty SASRec: ~100 kernels of a few
microseconds per step, bound by Python and launch overhead), so the Table 2 and fusion grids go
faster as many processes at once, one CPU thread each, sharing one cache (the runner's locks make
the shared upstream stages run once). Every job is an ordinary benchmark invocation that writes its
own result file; jobs are started in priority order, none is started after --deadline-s (nor one whose
`--expect`ed duration would run past --hard-deadline-s: the next that fits goes first), and one
still running at --hard-deadline-s is stopped (SIGTERM, then SIGKILL after 30 s; its finished runs stay in the cache, its file is
not written). Then `merge` turns the per-job files into the issue's results files:

    python -m benchmarks.grid run --plan gpu --out DIR --workers 14 --deadline-s 330 --hard-deadline-s 420 \\
        --device cuda --set sft.model=/tmp/minilm-l6
    python -m benchmarks.grid merge --out DIR      # -> benchmarks/results/experiment-<ds>.json, fusion-beauty.json

On a CPU, one worker per core: `--only PATTERN` gives a second worker another part of a plan, and
`merge --out DIR1 --out DIR2` pools their files; `--prior benchmarks/results/experiment-<ds>.json` pools an
earlier merge's runs when its folders are gone (each session starts on a fresh machine).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, set_flags
from schemas.names import BACKBONES, FUSIONS as ALL_FUSIONS

SEEDS = [42, 43, 44]
# The gate last: its enhanced cell is Table 2's tslrec cell, so its jobs add only the controls.
FUSIONS = [*(f for f in ALL_FUSIONS if f != "gate"), "gate"]
TABLE2, FUSION = "benchmarks.table2", "benchmarks.fusion"     # the job modules (`python -m ...`)


def table2_jobs(dataset: str, backbones: list[str], seeds: list[int]) -> list[tuple[str, list[str]]]:
    """One `benchmarks.table2` per dataset x seed x backbone (base, ci, tslrec at that train seed)."""
    return [(f"t2-{dataset}-{b}-{s}", [TABLE2, "--dataset", dataset, "--backbones", b, "--seeds", "1",
                                       "--set", f"train.trainer.seed={s}", f"--tag=-{b}-{s}", "--no-report"])
            for s in seeds for b in backbones]


def variant_jobs(dataset: str, backbones: list[str], seeds: list[int], variants: list[str]) -> list[tuple[str, list[str]]]:
    """One `benchmarks.table2` per variant x seed x backbone: one training each, so a job stopped at the hard
    deadline loses one training, and the base trainings (no upstream) run while the chain is computed."""
    return [(f"t2-{dataset}-{b}-{s}-{v}", [TABLE2, "--dataset", dataset, "--backbones", b, "--seeds", "1",
                                            "--variants", v, "--set", f"train.trainer.seed={s}", f"--tag=-{b}-{s}-{v}",
                                            "--no-report"])
            for v in variants for s in seeds for b in backbones]


def twin_after_bases(jobs: list[tuple[str, list[str]]], dataset: str, prefix: str = "t2") -> list[tuple[str, list[str]]]:
    """The base job that is the chain's own pretrain (SASRec at seed 42, a pretrain twin) waits for the
    chain job to finish its pretrain: queue it after the other base jobs, so that a second worker trains
    those meanwhile (on this CPU it sat waiting for 17 min of ML-1M's pretrain)."""
    twin = f"{prefix}-{dataset}-sasrec-42-base"
    rest = [j for j in jobs if j[0] != twin]
    last_base = max((i for i, (n, _) in enumerate(rest) if n.endswith("-base")), default=-1)
    return [*rest[:last_base + 1], *[j for j in jobs if j[0] == twin], *rest[last_base + 1:]]


def chain_job(dataset: str) -> tuple[str, list[str]]:
    """The upstream chain (data, pretrain, group, sft, augment) of a dataset, at once."""
    return (f"chain-{dataset}", ["tslrec.py", "run", "augment", "-d", dataset, "--json"])


def fusion_jobs(backbone: str, fusions: list[str], seeds: list[int], lm: str = "minilm") -> list[tuple[str, list[str]]]:
    """One `benchmarks.fusion` per fusion x seed on Beauty: enhanced (language model `lm`), pretrain and random
    sources. The gate's enhanced cell is Table 2's tslrec cell; Base comes from Table 2 too (same keys)."""
    jobs = []
    for s in seeds:
        for f in fusions:
            sources = ["pretrain", "random"] if f == "gate" else [f"enhanced-{lm}", "pretrain", "random"]
            jobs.append((f"fu-{backbone}-{f}-{s}", [FUSION, "--dataset", "beauty", "--backbones", backbone,
                                                   "--fusions", f, "--sources", *sources, "--seeds", str(s), "--no-base"]))
    return jobs


def fusion_cell_jobs(tag: str, backbone: str, fusions: list[str], sources: list[str],
                     seeds: list[int]) -> list[tuple[str, list[str]]]:
    """One `benchmarks.fusion` per seed over the given fusions x sources (e.g. a second language model's cells)."""
    return [(f"fu-{backbone}-{tag}-{s}", [FUSION, "--dataset", "beauty", "--backbones", backbone, "--fusions",
                                         *fusions, "--sources", *sources, "--seeds", str(s), "--no-base"]) for s in seeds]


def paper_jobs(dataset: str, backbones: list[str], seeds: list[int]) -> list[tuple[str, list[str]]]:
    """The paper's training settings (`--profile paper`, which also sets the pretrain backbone's): the
    profile's own chain, then one training per job -> experiment-<dataset>-paper after the merge."""
    chain = (f"chain-{dataset}-paper", ["tslrec.py", "run", "augment", "-d", dataset, "--profile", "paper", "--json"])
    jobs = [(f"p{name}", [*(a for a in args if not a.startswith("--tag=")), "--profile", "paper",
                          "--tag=-paper" + name.removeprefix(f"t2-{dataset}")])
            for name, args in variant_jobs(dataset, backbones, seeds, ["base", "ci", "tslrec"])]
    return [chain, *jobs]


def fusion_rest_jobs() -> list[tuple[str, list[str]]]:
    """The fusion cells still missing after session 6, one training (or ensemble) per job, the three seeds
    of a cell back to back so a session's end leaves whole cells: SASRec's random controls and SmolLM2
    cells first, then FMLP-Rec's LM and pretrain cells per fusion, its controls, then its SmolLM2 cells."""
    sasrec = [("add", "random"), ("nullspace", "random"), ("ensemble", "random"), ("add", "enhanced-smollm2"),
              ("nullspace", "enhanced-smollm2"), ("dual", "enhanced-smollm2"), ("ensemble", "enhanced-smollm2")]
    others = [f for f in ALL_FUSIONS if f != "gate"]
    fmlp = [(f, s) for f in others for s in ("enhanced-minilm", "pretrain")]
    fmlp += [("ensemble", "none"), ("gate", "pretrain"), ("gate", "random")]
    fmlp += [(f, "random") for f in others]
    fmlp += [(f, "enhanced-smollm2") for f in ALL_FUSIONS]
    return [(f"fr-{b}-{f}-{src}-{s}", [FUSION, "--dataset", "beauty", "--backbones", b, "--fusions", f,
                                       "--sources", src, "--seeds", str(s), "--no-base"])
            for b, cells in (("sasrec", sasrec), ("fmlprec", fmlp)) for f, src in cells for s in SEEDS]


def ml1m_length_jobs() -> list[tuple[str, list[str]]]:
    """ML-1M SASRec pretrain with the original SASRec's maximum length (200) next to ours (50): does
    seeing more of a long history explain our low unmasked figures (the speed issue, item 3)?"""
    return [(f"len-ml-1m-{n}", ["tslrec.py", "run", "pretrain", "-d", "ml-1m", "--set", f"pretrain.backbone.max_len={n}",
                                "--json"]) for n in (200,)]


def plan(name: str) -> list[tuple[str, list[str]]]:
    """Jobs in priority order. `gpu`: Beauty's Table 2, the first seed of Yelp's and ML-1M's chains
    (their upstream stages start early), Beauty's SASRec fusions, then the rest."""
    if name == "gpu":
        beauty = table2_jobs("beauty", BACKBONES, SEEDS)
        yelp, ml = table2_jobs("yelp", BACKBONES, SEEDS), table2_jobs("ml-1m", BACKBONES, SEEDS)
        return [*beauty, yelp[0], ml[0], *ml1m_length_jobs(), *fusion_jobs("sasrec", FUSIONS, SEEDS), *yelp[1:], *ml[1:],
                *fusion_jobs("fmlprec", FUSIONS, SEEDS)]
    if name == "gpu-rest":     # after the CPU sessions' Beauty grid: ML-1M, Yelp, then the fusion cells
        ml, yelp = table2_jobs("ml-1m", BACKBONES, SEEDS), table2_jobs("yelp", BACKBONES, SEEDS)
        return [ml[0], yelp[0], *ml[1:], *yelp[1:], *fusion_jobs("sasrec", FUSIONS, SEEDS),
                *fusion_jobs("fmlprec", FUSIONS, SEEDS)]
    if name == "gpu-ml-1m":   # one lent GPU call: ML-1M's chain beside its base trainings, then ci, then tslrec
        return [chain_job("ml-1m"), *twin_after_bases(variant_jobs("ml-1m", BACKBONES, SEEDS, ["base", "ci", "tslrec"]), "ml-1m")]
    if name == "cpu-beauty-rest":   # two CPU workers after Table 2: `--only 'a-*'` and `--only 'b-*'`
        chain = ("a-t2-beauty-sasrec-chain", [TABLE2, "--dataset", "beauty", "--backbones", "sasrec",
                                               "--seeds", "3", "--reseed-chain", "--no-report"])
        ensemble = fusion_cell_jobs("ensemble", "sasrec", ["ensemble"], ["enhanced-minilm", "pretrain"], SEEDS)
        a = [chain, *fusion_cell_jobs("smollm2", "sasrec", ["gate", "init"], ["enhanced-smollm2"], SEEDS), ensemble[2],
             *fusion_cell_jobs("gate-controls", "sasrec", ["gate"], ["pretrain", "random"], SEEDS),
             *fusion_cell_jobs("init-random", "sasrec", ["init"], ["random"], SEEDS)]
        b = [*fusion_cell_jobs("dual", "sasrec", ["dual"], ["enhanced-minilm", "pretrain", "random"], SEEDS), *ensemble[:2]]
        return [*((n if n.startswith("a-") else "a-" + n, j) for n, j in a), *(("b-" + n, j) for n, j in b)]
    if name == "cpu-ensemble-control":   # base + base, after the fix that gave each member its own resume point
        return fusion_cell_jobs("ensemble-control", "sasrec", ["ensemble"], ["none"], SEEDS)
    if name == "gpu-final":   # what Table 2 still lacks: ML-1M's ci/tslrec cells and Beauty under the paper's settings
        ml = variant_jobs("ml-1m", BACKBONES, SEEDS, ["ci", "tslrec"])
        ml_ci = [j for j in ml if j[0].endswith("-ci") and "-sasrec-" not in j[0]]
        ml_tslrec = [j for j in ml if j[0].endswith("-tslrec") and ("-sasrec-" not in j[0] or "-43-" in j[0])]
        paper = paper_jobs("beauty", ["sasrec", "fmlprec"], SEEDS)
        by_variant = {v: [j for j in paper[1:] if j[0].endswith(f"-{v}")] for v in ("base", "ci", "tslrec")}
        # Both chains first, then what each waits on least: base trainings need no chain at all.
        return [chain_job("ml-1m"), paper[0], *ml_ci, *by_variant["base"], *ml_tslrec, *by_variant["ci"],
                *by_variant["tslrec"]]
    if name == "cpu-ml-1m-gpu-twins":   # ML-1M wholly on this CPU's chain: again, the trainings the lent GPU made
        ml = variant_jobs("ml-1m", BACKBONES, SEEDS, ["base", "ci", "tslrec"])
        cpu_made = {n for n, _ in plan("gpu-final") if n.startswith("t2-ml-1m-")}   # sessions 8-9 ran these here
        todo = [j for j in ml if j[0] not in cpu_made]
        # SASRec's cells first (its tslrec cell then rests on one chain), then the other backbones' bases.
        return [chain_job("ml-1m"), *sorted(todo, key=lambda j: (j[0].split("-")[3] != "sasrec",
                                                                   BACKBONES.index(j[0].split("-")[3])))]
    if name == "cpu-beauty-paper":   # --profile paper on this CPU, one worker per core: each training ~1-1.6 h
        chain, *jobs = paper_jobs("beauty", ["sasrec", "fmlprec"], SEEDS)
        return [chain, *twin_after_bases(jobs, "beauty", prefix="pt2")]
    if name == "cpu-fusion-rest":   # both cores, `--workers 2`: the fusion cells session 6 left
        return fusion_rest_jobs()
    if name == "cpu-beauty":   # one CPU core for a session: Beauty's Table 2, seed-major
        return table2_jobs("beauty", BACKBONES, SEEDS)
    if name == "cpu-yelp":     # backbone-major: a session's end leaves whole backbones (3 seeds each) done
        return [j for b in BACKBONES for j in table2_jobs("yelp", [b], SEEDS)]
    if name == "tiny":   # the runner's own check on synthetic data
        return [*table2_jobs("synthetic", ["sasrec", "caser"], [42, 43]),
                *[(n.replace("beauty", "synthetic"), [a.replace("beauty", "synthetic") for a in args])
                  for n, args in fusion_jobs("sasrec", ["add", "gate"], [42, 43])]]
    raise ValueError(f"unknown plan {name!r}")


def job_command(name: str, args: list[str], out: Path, device: str, sets: list[str]) -> list[str]:
    what = args[0]
    if what == "tslrec.py":   # a CLI run: global options first; its JSON record goes to stdout (the log)
        return [sys.executable, str(ROOT / what), "--device", device, "--threads", "1", "--no-progress", *args[1:],
                *set_flags(sets)]
    if "--reseed-chain" in args:     # its own file: a re-seeded chain is another experiment, not Table 2's seeds
        target = out / "chain"
    elif what == TABLE2:
        target = out / "table2"
    else:                            # one file per job, named after it
        target = out / "fusion" / f"{name}.json"
    extra = ["--threads", "1", "--device", device, "--out", str(target)]
    return [sys.executable, "-m", what, *args[1:], *extra, *set_flags(sets)]


def run(args: argparse.Namespace) -> None:
    jobs = [(n, j) for n, j in plan(args.plan) if not args.only or any(fnmatch(n, p) for p in args.only)]
    model = [s.split("=", 1)[1] for s in args.sets if s.startswith("sft.model=")]
    if model:   # benchmarks.fusion's `enhanced-minilm` source sets sft.model itself: name the model the jobs use
        jobs = [(n, [a.replace("enhanced-minilm", f"enhanced-{model[-1]}") for a in j]) for n, j in jobs]
    (args.out / "table2").mkdir(parents=True, exist_ok=True)
    (args.out / "fusion").mkdir(parents=True, exist_ok=True)
    (args.out / "misc").mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    t0, todo, live, done = time.monotonic(), list(jobs), {}, []
    while todo or live:
        now = time.monotonic() - t0
        while todo and len(live) < args.workers and now < args.deadline_s:
            if (i := first_that_fits(todo, now, args.hard_deadline_s, args.expect)) is None:
                todo.clear()   # time only runs on: what does not fit now never will
                break
            name, jargs = todo.pop(i)
            cli = jargs[0] == "tslrec.py"
            with open(logs / f"{name}.log", "w") as log, open(args.out / "misc" / f"{name}.json", "w") if cli else log as out:
                live[name] = (subprocess.Popen(job_command(name, jargs, args.out, args.device, args.sets), stdout=out,
                                               stderr=log, cwd=ROOT), time.monotonic())
        if now >= args.deadline_s:
            todo.clear()
        for name, (proc, started) in list(live.items()):
            if proc.poll() is not None:
                done.append({"job": name, "rc": proc.returncode, "seconds": round(time.monotonic() - started, 1)})
                del live[name]
                print(f"{now:6.0f}s {name}: rc {proc.returncode}", file=sys.stderr, flush=True)
                write_state(args, jobs, done, live, t0)   # a grid still running can be merged as jobs land
        if now >= args.hard_deadline_s and live:
            stop([proc for proc, _ in live.values()])
            done.extend({"job": name, "rc": "stopped at the hard deadline", "seconds": round(time.monotonic() - started, 1)}
                        for name, (_, started) in live.items())
            live.clear()
        time.sleep(1.0)
    write_state(args, jobs, done, live, t0)


def parse_expect(rules: list[str]) -> list[tuple[str, float]]:
    """`--expect PATTERN=SECONDS` rules -> (pattern, seconds), parsed once; ValueError names a bad rule."""
    parsed = []
    for rule in rules:
        pattern, _, seconds = rule.rpartition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = float("nan")
        if not pattern or not value >= 0:   # also refuses nan and negative durations
            raise ValueError(f"--expect {rule!r}: want PATTERN=SECONDS, e.g. 'pt2-*-fmlprec-*=5400'")
        parsed.append((pattern, value))
    return parsed


def expected_s(name: str, expect: list[tuple[str, float]]) -> float:
    """A job's expected duration: the first matching rule's seconds; 0 if none matches."""
    return next((seconds for pattern, seconds in expect if fnmatch(name, pattern)), 0.0)


def first_that_fits(todo: list, now: float, hard_deadline_s: float, expect: list[tuple[str, float]]) -> int | None:
    """Index of the first job (priority order) expected to end before the hard deadline: a job the deadline
    would stop wastes its core (a run never spans sessions), while a shorter one behind it may still fit."""
    return next((i for i, (name, _) in enumerate(todo) if now + expected_s(name, expect) < hard_deadline_s), None)


def stop(procs: list[subprocess.Popen], grace_s: float = 30.0) -> None:
    """SIGTERM to all first: each job unwinds (its cache locks and their .owner files released, as on
    Ctrl-C); SIGKILL for those still there after grace_s."""
    for proc in procs:
        proc.terminate()
    end = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def write_state(args: argparse.Namespace, jobs: list, done: list[dict], live: dict, t0: float) -> None:
    """DIR/grid.json: jobs finished (rc, seconds), running, and not started; rewritten as each job ends."""
    not_started = [n for n, _ in jobs if n not in {d["job"] for d in done} and n not in live]
    state = {"plan": args.plan, "device": args.device, "workers": args.workers, "wall_s": round(time.monotonic() - t0, 1),
             "jobs": done, "running": sorted(live), "not_started": not_started}
    tmp = args.out / "grid.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(args.out / "grid.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run", help="run a plan's jobs in parallel until the deadline")
    r.add_argument("--plan", default="gpu")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--workers", type=int, default=4)
    r.add_argument("--deadline-s", type=float, default=3600, help="no job starts after this")
    r.add_argument("--hard-deadline-s", type=float, default=4200, help="jobs still running are stopped")
    r.add_argument("--device", default="cpu")
    r.add_argument("--set", dest="sets", action="append", default=[], help="stage.field=value for every job")
    r.add_argument("--expect", action="append", default=[], metavar="PATTERN=SECONDS",
                   help="expected duration of the jobs whose name matches (fnmatch, repeatable, first match): a job "
                        "that would not end before --hard-deadline-s is not started, a later one that fits is")
    r.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="run only the plan's jobs whose name matches (fnmatch, repeatable): a second worker "
                        "on another core takes another part of a plan, e.g. 't2-yelp-fmlprec-*'")
    m = sub.add_parser("merge", help="merge the per-job files into the results files")
    m.add_argument("--out", type=Path, action="append", required=True,
                   help="a folder `run` wrote (repeatable: the grids of several workers merge into one file)")
    m.add_argument("--results", type=Path, default=RESULTS)
    m.add_argument("--prior", type=Path, action="append", default=[], metavar="FILE",
                   help="a results file an earlier merge wrote (repeatable): its runs and jobs pool with the "
                        "folders', for when the folders that made it are gone (a session on a fresh machine)")
    m.add_argument("--note", default="", help="where and how the jobs ran (kept in every merged file)")
    args = ap.parse_args()
    for folder in args.out if args.verb == "merge" else []:
        if not (folder / "grid.json").is_file():
            raise SystemExit(f"error: {folder} holds no grid.json: not a folder `benchmarks.grid run` wrote")
    for prior in args.prior if args.verb == "merge" else []:
        if not prior.is_file():
            raise SystemExit(f"error: --prior {prior}: no such file")
    if args.verb == "run":
        try:
            names = [n for n, _ in plan(args.plan)]
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        if args.only and not any(fnmatch(n, p) for n in names for p in args.only):
            raise SystemExit(f"error: no job of plan {args.plan!r} matches {' '.join(args.only)}")
        try:
            args.expect = parse_expect(args.expect)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        run(args)
    else:
        from benchmarks.grid_merge import merge
        try:
            merge(args.out, args.results, args.note, args.prior)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
