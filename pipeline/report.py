"""`tslrec report`: Table 1, Table 2 (markdown + CSV), Fig. 4 and Fig. 5 from saved experiments."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch

from pipeline.cache import Cache
from pipeline.figures import activity_groups, fig4_agreement, fig5_activity
from pipeline.stats import METRICS, summarize
from schemas.common import RunRecord
from stages.sequences import Sequences

HEAD = {"hr5": "HR@5", "hr10": "HR@10", "ndcg5": "NDCG@5", "ndcg10": "NDCG@10"}


def latest_experiments(cache_dir: Path, datasets: list[str] | None = None) -> list[dict[str, Any]]:
    """The newest saved experiment per dataset (optionally only the named datasets)."""
    found: dict[str, tuple[float, dict[str, Any]]] = {}
    for path in (Path(cache_dir) / "experiments").glob("*.json"):
        exp = json.loads(path.read_text())
        name, mtime = exp["dataset"], path.stat().st_mtime
        if (datasets is None or name in datasets) and (name not in found or mtime > found[name][0]):
            found[name] = (mtime, exp)
    return [found[k][1] for k in sorted(found)]


def e4srec_rows(cache: Cache, dataset: str, mask_history: bool) -> list[dict[str, Any]]:
    """Table 2 rows for E4SRec (`sft` runs with task=next_item) cached for this dataset and protocol:
    one row per LLM, seeds as in `summarize`. E4SRec is a recommender of its own, so its row sits
    next to the backbones (backbone = "e4srec", variant = the LLM)."""
    runs = []
    for rec in cache.runs():
        if rec.stage != "sft" or rec.config.get("task") != "next_item" or rec.pipeline["data"]["dataset"] != dataset:
            continue
        r = rec.result
        if r.get("test") is None or r["test"]["mask_history"] != mask_history:
            continue
        runs.append({"backbone": "e4srec", "variant": r["model"], "seed": rec.config["seed"], "test": r["test"],
                     "seconds_per_epoch": r["seconds_per_epoch"]})
    return summarize(runs)


def with_e4srec(exps: list[dict[str, Any]], cache: Cache) -> list[dict[str, Any]]:
    """The experiments with any cached E4SRec rows of their dataset added to their summary."""
    return [{**e, "summary": e["summary"] + e4srec_rows(cache, e["dataset"], e["mask_history"])} for e in exps]


def table2(exps: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Rows backbone x variant, columns dataset x metric; **best**, <u>second</u>, * for p <= 0.05."""
    keys = sorted({(r["backbone"], r["variant"]) for e in exps for r in e["summary"]},
                  key=lambda k: (k[0], ["base", "ci", "tslrec"].index(k[1]) if k[1] in ("base", "ci", "tslrec") else 9))
    header = ["backbone", "variant"] + [f"{e['dataset']} {HEAD[m]}" for e in exps for m in METRICS]
    cells: dict[tuple[str, str], list[str]] = {k: list(k) for k in keys}
    for e in exps:
        by = {(r["backbone"], r["variant"]): r for r in e["summary"]}
        stars = {(s["backbone"], s["metric"]) for s in e["significance"] if s["p"] is not None and s["p"] <= 0.05 and s["diff"] > 0}
        for m in METRICS:
            ranked = sorted({by[k]["mean"][m] for k in keys if k in by}, reverse=True)
            for k in keys:
                if k not in by:
                    cells[k].append("-")
                    continue
                v = by[k]["mean"][m]
                s = f"{v:.4f}" + ("*" if k[1] == "tslrec" and (k[0], m) in stars else "")
                s = f"**{s}**" if v == ranked[0] else f"<u>{s}</u>" if len(ranked) > 1 and v == ranked[1] else s
                cells[k].append(s)
    return header, [cells[k] for k in keys]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def table1(exps: list[dict[str, Any]]) -> str:
    header = ["Dataset", "#Users", "#Items", "#Interactions", "Density", "Avg.Length"]
    rows = []
    for e in exps:
        d = e["upstream"]["data"]["result"]
        rows.append([d["dataset"], f"{d['n_users']:,}", f"{d['n_items']:,}", f"{d['n_interactions']:,}",
                     f"{100 * d['density']:.2f}%", f"{d['avg_length']:.1f}"])
    return markdown(header, rows)


def fig5_for(exp: dict[str, Any], cache: Cache, out: Path) -> Path | None:
    """Per-variant HR@10/NDCG@10 over 5 activity groups; the first seed's ranks of each variant."""
    data = exp["upstream"]["data"]
    rec = cache.get_run(data["key"])
    if rec is None:
        return None
    seqs = Sequences.from_tensors(cache.get(rec.outputs["sequences"]))
    lengths = seqs.train_part().lengths
    groups, labels = {}, []
    for run in exp["runs"]:
        if run["variant"] in groups or run["backbone"] != exp["runs"][0]["backbone"]:
            continue
        train = cache.get_run(run["key"])
        if train is None or "ranks" not in train.outputs:
            continue
        ranks = cache.get(train.outputs["ranks"])["test"]
        groups[run["variant"]], labels = activity_groups(lengths, ranks)
    if not groups:
        return None
    title = f"{exp['dataset']} ({exp['runs'][0]['backbone']}): test metrics by user activity"
    return fig5_activity(groups, labels, title, out / f"fig5_activity_{exp['dataset']}.png")


def write_report(cache_dir: Path, out: Path, datasets: list[str] | None = None,
                 experiments: list[Path] | None = None) -> dict[str, Any]:
    exps = [json.loads(Path(p).read_text()) for p in experiments] if experiments else latest_experiments(cache_dir, datasets)
    if not exps:
        raise FileNotFoundError(f"no saved experiments under {Path(cache_dir) / 'experiments'}; run `tslrec run all` first")
    out.mkdir(parents=True, exist_ok=True)
    cache = Cache(cache_dir)
    header, rows = table2(with_e4srec(exps, cache))
    files = {"table2_md": out / "table2.md", "table2_csv": out / "table2.csv", "table1_md": out / "table1.md"}
    mask = {e["dataset"]: e["mask_history"] for e in exps}
    note = "Test metrics, mean over seeds; * p <= 0.05 (two-sample t-test, TSLRec vs best other variant). History masking: " + \
        ", ".join(f"{k} {'on' if v else 'off'}" for k, v in mask.items()) + "\n\n"
    files["table2_md"].write_text(note + markdown(header, rows))
    with open(files["table2_csv"], "w", newline="") as f:
        csv.writer(f).writerows([header] + [[c.replace("**", "").replace("<u>", "").replace("</u>", "") for c in r] for r in rows])
    files["table1_md"].write_text(table1(exps))
    agreement = {e["dataset"]: {c: e["upstream"]["augment"]["result"][c] for c in ("c1", "c2", "c3")}
                 for e in exps if "augment" in e["upstream"]}
    if agreement:
        files["fig4"] = fig4_agreement(agreement, out / "fig4_agreement.png")
    for e in exps:
        p = fig5_for(e, cache, out)
        if p is not None:
            files[f"fig5_{e['dataset']}"] = p
    return {"datasets": [e["dataset"] for e in exps], "files": {k: str(v) for k, v in files.items()}}
