"""`tslrec report`: Table 1, Table 2 (markdown + CSV), the paper's Table 2 next to ours, Fig. 4 and
Fig. 5 from saved experiments.

Table 2 has one row per backbone x variant and one column per dataset x metric, across every
experiment given: mean ± std over seeds, **best** and <u>second</u> per column, * where TSLRec beats
the best other variant of its backbone with p <= 0.05 (two-sample t-test, as the paper), † where
it is worse with p <= 0.05. The CSV holds the same numbers, one line per dataset x row x metric.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pipeline.cache import Cache
from pipeline.figures import activity_bins, bin_metrics, fig4_agreement, fig5_activity
from pipeline.paper_table2 import PAPER_TABLE2, PROTOCOL, STARS
from pipeline.stats import METRICS, mean_std, summarize
from schemas.common import RunRecord
from stages.core.sequences import Sequences

HEAD = {"hr5": "HR@5", "hr10": "HR@10", "ndcg5": "NDCG@5", "ndcg10": "NDCG@10"}
VARIANT_ORDER = ["base", "ci", "tslrec"]


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


def merge_by_dataset(exps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One experiment per dataset (and protocol) for the tables: rows of several experiments on the
    same dataset are pooled; where two have the same backbone x variant, the one with more seeds
    wins (the first on a tie), and each backbone's t-tests come from the experiment its TSLRec row came from."""
    merged: dict[tuple[str, Any], dict[str, Any]] = {}
    for e in exps:
        key = (e["dataset"], e.get("mask_history"))
        if key not in merged:
            merged[key] = {**e, "summary": list(e["summary"]), "significance": list(e["significance"])}
            continue
        m = merged[key]
        rows = {(r["backbone"], r["variant"]): i for i, r in enumerate(m["summary"])}
        for r in e["summary"]:
            k = (r["backbone"], r["variant"])
            if k not in rows:
                m["summary"].append(r)
            elif r["n_seeds"] > m["summary"][rows[k]]["n_seeds"]:
                m["summary"][rows[k]] = r
            else:
                continue
            if r["variant"] == "tslrec":
                m["significance"] = [s for s in m["significance"] if s["backbone"] != r["backbone"]] + \
                    [s for s in e["significance"] if s["backbone"] == r["backbone"]]
    return list(merged.values())


def row_order(key: tuple[str, str]) -> tuple[str, int]:
    return key[0], VARIANT_ORDER.index(key[1]) if key[1] in VARIANT_ORDER else len(VARIANT_ORDER)


def marks(exp: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(backbone, metric) -> '*' (TSLRec significantly better, p <= 0.05), '†' (significantly worse) or ''."""
    out = {}
    for s in exp["significance"]:
        significant = s["p"] is not None and s["p"] <= 0.05
        out[(s["backbone"], s["metric"])] = ("*" if s["diff"] > 0 else "†") if significant else ""
    return out


def table2_cells(exps: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """(row keys, cells): one cell per dataset x row x metric with mean, std, n_seeds, mark, rank."""
    keys = sorted({(r["backbone"], r["variant"]) for e in exps for r in e["summary"]}, key=row_order)
    cells = []
    for e in exps:
        by = {(r["backbone"], r["variant"]): r for r in e["summary"]}
        mark = marks(e)
        for m in METRICS:
            ranked = sorted({by[k]["mean"][m] for k in keys if k in by}, reverse=True)
            for k in keys:
                if k not in by:
                    continue
                row, v = by[k], by[k]["mean"][m]
                cells.append({"dataset": e["dataset"], "mask_history": e.get("mask_history"), "backbone": k[0], "variant": k[1],
                              "metric": m, "n_seeds": row["n_seeds"], "mean": v, "std": row["std"][m],
                              "mark": mark.get((k[0], m), "") if k[1] == "tslrec" else "", "rank": ranked.index(v) + 1})
    return keys, cells


def format_cell(c: dict[str, Any], most_seeds: int = 1) -> str:
    """mean ± std, the significance mark, and (n=K) where the cell has fewer seeds than the table's fullest."""
    s = f"{c['mean']:.4f}" + (f" ± {c['std']:.4f}" if c["n_seeds"] > 1 else "") + c["mark"]
    s += f" (n={c['n_seeds']})" if c["n_seeds"] < most_seeds else ""
    return f"**{s}**" if c["rank"] == 1 else f"<u>{s}</u>" if c["rank"] == 2 else s


def table2(exps: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Rows backbone x variant, columns dataset x metric (markdown cells)."""
    keys, cells = table2_cells(exps)
    header = ["backbone", "variant"] + [f"{e['dataset']} {HEAD[m]}" for e in exps for m in METRICS]
    at = {(c["dataset"], c["backbone"], c["variant"], c["metric"]): c for c in cells}
    most = max((c["n_seeds"] for c in cells), default=1)
    rows = [[*k, *[format_cell(at[(e["dataset"], *k, m)], most) if (e["dataset"], *k, m) in at else "-"
                   for e in exps for m in METRICS]] for k in keys]
    return header, rows


def write_table2_csv(path: Path, cells: list[dict[str, Any]]) -> None:
    cols = ["dataset", "mask_history", "backbone", "variant", "metric", "n_seeds", "mean", "std", "mark", "rank"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for c in cells:
            w.writerow({**c, "mean": f"{c['mean']:.6f}", "std": f"{c['std']:.6f}"})


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


def paper_vs_ours(exps: list[dict[str, Any]]) -> str:
    """HR@10 and NDCG@10 per dataset x backbone x variant: the paper's, ours in our protocol, and ours
    in the paper's protocol (the same weights' `test_alt`, where the experiment has it)."""
    ours = {(e["dataset"], r["backbone"], "-" if r["backbone"] == "e4srec" else r["variant"]): (e, r)
            for e in exps for r in e["summary"]}
    header = ["dataset", "backbone", "variant"] + [f"{HEAD[m]} {who}" for m in ("hr10", "ndcg10")
                                                   for who in ("paper", "ours", "ours, paper's protocol")]
    rows = []
    for e in exps:
        for (dataset, backbone, variant), paper in PAPER_TABLE2.items():
            if dataset != e["dataset"]:
                continue
            got = ours.get((dataset, backbone, variant))
            cells = []
            for m in ("hr10", "ndcg10"):
                star = "*" if (dataset, backbone, m) in STARS and variant == "tslrec" else ""
                cells.append(f"{paper[m]:.4f}{star}")
                cells.append("-" if got is None else format_cell({**table2_cell(got[0], got[1], m), "rank": 0}))
                alt = None if got is None else got[1].get("alt")
                cells.append("-" if alt is None else f"{alt[m]:.4f}")
            rows.append([dataset, backbone, variant, *cells])
    protocols = {e["dataset"]: "history masked" if e["mask_history"] else "history not masked" for e in exps}
    note = (f"Paper: {PROTOCOL}; * p <= 0.05 as published. Ours: " + ", ".join(f"{k} {v}" for k, v in protocols.items())
            + " (mean ± std over seeds; * / † TSLRec significantly better / worse than the best other variant, p <= 0.05); "
            "'ours, paper's protocol': the same weights ranked under the other masking setting (mean over seeds). "
            "'-': not run.\n\n")
    return note + markdown(header, rows)


def table2_cell(exp: dict[str, Any], row: dict[str, Any], m: str) -> dict[str, Any]:
    mark = marks(exp).get((row["backbone"], m), "") if row["variant"] == "tslrec" else ""
    return {"mean": row["mean"][m], "std": row["std"][m], "n_seeds": row["n_seeds"], "mark": mark}


def data_run(cache: Cache, upstream: dict[str, Any]) -> RunRecord | None:
    """The experiment's data run, or one in this cache made from the same file with the same result: runs
    merged from another machine (another torch: other keys) still have their users' lengths here."""
    rec = cache.get_run(upstream["key"])
    if rec is not None or not upstream.get("result"):
        return rec
    return next((r for r in cache.runs() if r.stage == "data" and r.result == upstream["result"]), None)


def fig5_title(dataset: str, backbone: str, n_seeds: dict[str, int], missing: list[str]) -> str:
    """Says how many seeds each bar pools when that differs, and which variants have no per-user ranks
    in this cache (a merged experiment may hold runs computed elsewhere, e.g. on a lent GPU)."""
    counts = set(n_seeds.values())
    n = counts.pop() if len(counts) == 1 else None
    seeds = (f"mean ± std over {n} seed{'s' if n != 1 else ''}" if n is not None else
             "mean ± std over seeds: " + ", ".join(f"{v} {k}" for v, k in n_seeds.items()))
    absent = f"; {', '.join(missing)}: ranks not in this cache" if missing else ""
    return f"{dataset}, {backbone}: test metrics by user activity ({seeds}{absent})"


def fig5_for(exp: dict[str, Any], cache: Cache, out: Path) -> dict[str, Path]:
    """One Fig. 5 per backbone: HR@10 / NDCG@10 per activity bin and variant, mean ± std over seeds."""
    rec = data_run(cache, exp["upstream"]["data"])
    if rec is None:
        return {}
    lengths = Sequences.from_tensors(cache.get(rec.outputs["sequences"])).train_part().lengths
    bins, labels, counts = activity_bins(lengths)
    files = {}
    for backbone in dict.fromkeys(r["backbone"] for r in exp["runs"]):
        per_variant: dict[str, list[dict[str, list[float]]]] = {}
        for run in exp["runs"]:
            train = cache.get_run(run["key"]) if run["backbone"] == backbone else None
            if train is not None and "ranks" in train.outputs:
                per_variant.setdefault(run["variant"], []).append(bin_metrics(bins, cache.get(train.outputs["ranks"])["test"], len(labels)))
        missing = [v for v in dict.fromkeys(r["variant"] for r in exp["runs"] if r["backbone"] == backbone)
                   if v not in per_variant]
        if not per_variant or (missing and len(per_variant) < 2):   # one variant left of several: nothing to compare
            continue
        groups = {v: {m: [mean_std([s[m][b] for s in seeds]) for b in range(len(labels))] for m in ("hr10", "ndcg10")}
                  for v, seeds in sorted(per_variant.items(), key=lambda kv: row_order((backbone, kv[0])))}
        title = fig5_title(exp["dataset"], backbone, {v: len(s) for v, s in per_variant.items()}, missing)
        name = f"fig5_{exp['dataset']}_{backbone}"
        files[name] = fig5_activity(groups, labels, counts, title, out / f"{name}.png")
    return files


def write_report(cache_dir: Path, out: Path, datasets: list[str] | None = None,
                 experiments: list[Path] | None = None) -> dict[str, Any]:
    exps = [json.loads(Path(p).read_text()) for p in experiments] if experiments else latest_experiments(cache_dir, datasets)
    if not exps:
        raise FileNotFoundError(f"no saved experiments under {Path(cache_dir) / 'experiments'}; run `tslrec run all` first")
    out.mkdir(parents=True, exist_ok=True)
    cache = Cache(cache_dir)
    full = with_e4srec(merge_by_dataset(exps), cache)
    header, rows = table2(full)
    files = {"table2_md": out / "table2.md", "table2_csv": out / "table2.csv", "table1_md": out / "table1.md",
             "table2_paper_md": out / "table2-paper-vs-ours.md"}
    mask = {e["dataset"]: e["mask_history"] for e in exps}
    note = ("Test metrics, mean ± std over seeds; **best**, <u>second</u>; * TSLRec better than the best other variant "
            "of its backbone with p <= 0.05 (two-sample t-test), † worse with p <= 0.05; (n=K): K seeds only. History masking: "
            + ", ".join(f"{k} {'on' if v else 'off (RecBole full-sort, the paper)'}" for k, v in mask.items()) + "\n\n")
    files["table2_md"].write_text(note + markdown(header, rows))
    write_table2_csv(files["table2_csv"], table2_cells(full)[1])
    files["table1_md"].write_text(table1(exps))
    files["table2_paper_md"].write_text(paper_vs_ours(full))
    agreement = {e["dataset"]: {c: e["upstream"]["augment"]["result"][c] for c in ("c1", "c2", "c3")}
                 for e in exps if "augment" in e["upstream"]}
    if agreement:
        files["fig4"] = fig4_agreement(agreement, out / "fig4_agreement.png")
    for e in exps:
        files.update(fig5_for(e, cache, out))
    return {"datasets": [e["dataset"] for e in exps], "files": {k: str(v) for k, v in files.items()}}
