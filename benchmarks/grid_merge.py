"""Merge the per-job files of `python -m benchmarks.grid run` into the issue's results files.

- table2/experiment-<dataset>-<backbone>-<seed>.json (one `benchmarks.table2` each) -> one
  benchmarks/results/experiment-<dataset>.json per dataset: every run, then `summary` (per backbone x
  variant: n_seeds, mean, std, per_seed), `significance` and `significance_vs_each` recomputed over all
  of them by the same functions `run all` uses.
- fusion/*.json (one `benchmarks.fusion` each) -> benchmarks/results/fusion-beauty.json, with Base and the gate's
  enhanced cell taken from Table 2's runs of the same keys (a `run all` base / tslrec run is exactly that
  cell's config), summarized by benchmarks/fusion.py's own `summarize_cells` / `choice_on_valid`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.fusion import write as write_fusion
from pipeline.experiment import versus_each
from pipeline.stats import significance, summarize

KEEP = ("command", "commit", "git_commit", "machine", "versions")   # git_commit: job files before benchmarks/common.py


def _load(paths: list[Path]) -> list[dict[str, Any]]:
    out = []
    for p in sorted(paths):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue   # a job stopped while writing: its runs are simply not counted
    return out


def computed_first(runs: Any) -> dict[str, dict[str, Any]]:
    """key -> run, one per key: a later job that found a run in the cache (cached: true) reports the
    same figures, but the record of the job that computed it says so; that one is kept."""
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        if r["key"] not in out or (out[r["key"]].get("cached") and not r.get("cached")):
            out[r["key"]] = r
    return out


def check_one_run_per_seed(name: str, runs: list[dict[str, Any]]) -> None:
    """Two runs (two keys) of one backbone x variant x seed would count as two seeds. That happens when
    folders from two machines are merged: another torch version gives every run another key."""
    seen: dict[tuple[str, str, int], str] = {}
    for r in runs:
        cell = (r["backbone"], r["variant"], r["seed"])
        if cell in seen:
            raise ValueError(f"{name}: {' '.join(map(str, cell))} has two runs ({seen[cell][:12]}, {r['key'][:12]}), "
                             "e.g. from two machines; merge their folders separately")
        seen[cell] = r["key"]


def check_one_upstream(name: str, files: list[dict[str, Any]]) -> None:
    """Runs whose shared upstream stages have other keys (another machine, another commit's stage code)
    rest on other embeddings: pooled, their cells would compare unlike things."""
    seen: dict[str, str] = {}
    for f in files:
        for stage, rec in f["upstream"].items():
            key = rec.get("key")
            if key and seen.setdefault(stage, key) != key:
                raise ValueError(f"{name}: two {stage} keys ({seen[stage][:12]}, {key[:12]}): the jobs ran on "
                                 "different upstream chains; merge them separately")


def job_records(f: dict[str, Any]) -> list[dict[str, Any]]:
    """A job file's own record, or the job records of an earlier merge (`--prior`)."""
    return f["jobs"] if "jobs" in f else [{k: f[k] for k in KEEP if k in f}]


def merge_table2(files: list[dict[str, Any]], note: str) -> dict[str, dict[str, Any]]:
    """One record per dataset and profile: `--profile paper` jobs become experiment-<dataset>-paper, never
    pooled with the default settings' runs (their keys differ anyway; their cells must not mix). A file
    may also be an earlier merge's record: its runs and jobs pool like a job file's."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        name = f"experiment-{f['dataset']}" + (f"-{f['profile']}" if f.get("profile") else "")
        by_name.setdefault(name, []).append(f)
    merged = {}
    for name, fs in by_name.items():
        dataset = fs[0]["dataset"]
        # A base-only job's upstream is {data}; the fullest one (with augment) is the chain's record.
        runs = list(computed_first(r for f in fs for r in f["runs"]).values())
        check_one_run_per_seed(name, runs)
        check_one_upstream(name, fs)
        runs.sort(key=lambda r: (r["backbone"], r["variant"], r["seed"]))
        rows = summarize(runs)
        merged[name] = {
            "benchmark": name, "dataset": dataset, "profile": fs[0].get("profile"), "note": note,
            "mask_history": fs[0]["mask_history"], "seed_mode": fs[0].get("seed_mode", "downstream"),
            "jobs": [j for f in fs for j in job_records(f)], "upstream": max((f["upstream"] for f in fs), key=len),
            "pipeline": fs[0]["pipeline"], "runs": runs, "summary": rows,
            "significance": significance(rows), "significance_vs_each": versus_each(rows),
        }
    return merged


def fusion_runs_from_table2(table2: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 2's Beauty base and tslrec (gate, enhanced MiniLM) runs as fusion-benchmark runs."""
    out = []
    for r in table2.get("runs", []):
        if r["variant"] not in ("base", "tslrec"):
            continue
        fusion, source = ("base", None) if r["variant"] == "base" else ("gate", "enhanced-minilm")
        out.append({"backbone": r["backbone"], "fusion": fusion, "source": source, "seed": r["seed"], "key": r["key"],
                    "stage": r["stage"], "cached": r["cached"], "valid": r["valid"], "test": r["test"],
                    "test_alt": r.get("test_alt"), "best_epoch": r["best_epoch"], "epochs_run": None,
                    "seconds_per_epoch": r["seconds_per_epoch"], "ensemble_weight": None, "from": "table2"})
    return out


def load_prior(path: Path) -> dict[str, Any]:
    rec = json.loads(path.read_text())
    if not str(rec.get("benchmark", "")).startswith("experiment-") or "jobs" not in rec:
        raise ValueError(f"--prior {path}: not an experiment-<dataset>.json that grid.py merge wrote")
    return rec


def merge(outs: list[Path], results: Path, note: str, priors: list[Path] = ()) -> None:
    """outs: the folders `grid.py run` wrote; several workers' grids merge into one file per dataset.
    priors: results files earlier merges wrote, whose folders are gone (a session on a fresh machine)."""
    files = _load([p for out in outs for p in (out / "table2").glob("*.json")])
    table2 = merge_table2([*map(load_prior, priors), *files], note)
    for name, rec in table2.items():
        (results / f"{name}.json").write_text(json.dumps(rec, indent=1) + "\n")
        print(results / f"{name}.json")
    fusion_files = _load([p for out in outs for p in (out / "fusion").glob("*.json")])
    if not fusion_files:
        return
    runs = {(r["backbone"], r["fusion"], r["source"], r["seed"]): r for f in fusion_files for r in f["runs"]}
    for r in fusion_runs_from_table2(table2.get(f"experiment-{fusion_files[0]['dataset']}", {})):
        runs.setdefault((r["backbone"], r["fusion"], r["source"], r["seed"]), r)
    meta = {k: fusion_files[0].get(k) for k in fusion_files[0] if k not in ("cells", "runs", "choice_on_valid")}
    meta["note"] = note
    meta["commands"] = sorted({f.get("command", "") for f in fusion_files})
    path = results / f"fusion-{fusion_files[0]['dataset']}.json"
    write_fusion(path, sorted(runs.values(), key=lambda r: (r["backbone"], r["fusion"], str(r["source"]), r["seed"])), meta)
    print(path)
