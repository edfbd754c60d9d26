"""Blocks for the experiment files (`tslrec run all` / benchmarks/grid.py merge, benchmarks/backbones.py):
Table 1, Table 2 beside the paper's, TSLRec minus Base, and the same cells under other settings or machines."""
from __future__ import annotations

import re
from typing import Any, Callable

from .load import REL, Results, caption, provenance
from .tables import BACKBONE_NAMES, BACKBONES, DATASET_NAMES, VARIANTS, f4, pm, pval, side, table


def summary_of(d: dict[str, Any], backbone: str, variant: str) -> dict[str, Any] | None:
    return next((s for s in d.get("summary", []) if s["backbone"] == backbone and s["variant"] == variant), None)


def sig_of(d: dict[str, Any], backbone: str, vs: str | None = None, metric: str = "ndcg10") -> dict[str, Any] | None:
    """TSLRec's t-test against variant `vs`, or (vs=None) against the best other variant (the `significance` list)."""
    lists = [d.get("significance") or []] if vs is None else [d.get("significance_vs_each") or [], d.get("significance") or []]
    for entries in lists:
        for s in entries:
            if s["backbone"] == backbone and s["metric"] == metric and (vs is None or s["vs"] == vs):
                return s
    return None


def paper_rows(r: Results) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(x["dataset"], x["method"], x["variant"]): x for x in r("paper-table2.json")["rows"]}


def table2_block(name: str, dataset: str) -> Callable[[Results], str]:
    """Table 2 for one dataset: ours (masked, mean ± std), TSLRec's t-test, ours unmasked, the paper's."""
    def block(r: Results) -> str:
        d = r(name)
        paper = paper_rows(r)
        rows = []
        for b in [x for x in BACKBONES if any(s["backbone"] == x for s in d["summary"])] + \
                 sorted({s["backbone"] for s in d["summary"]} - set(BACKBONES)):
            for v in VARIANTS:
                s = summary_of(d, b, v)
                if s is None:
                    continue
                test = ""
                if v == "tslrec":
                    sg = sig_of(d, b)
                    if sg and sg.get("diff") is not None:
                        test = f"vs {sg['vs']} {sg['diff']:+.4f}, p = {pval(sg['p'])}"
                alt = s.get("alt") or {}
                p = paper.get((dataset, b, v), {})
                star = "*" if "ndcg10" in p.get("starred", []) else ""
                rows.append([BACKBONE_NAMES.get(b, b), v, s["n_seeds"], pm(s["mean"]["hr10"], s["std"]["hr10"]),
                             pm(s["mean"]["ndcg10"], s["std"]["ndcg10"]), test,
                             f"{f4(alt.get('hr10'))} / {f4(alt.get('ndcg10'))}",
                             f"{f4(p.get('hr10'))} / {f4(p.get('ndcg10'))}{star}" if p else "-"])
        head = f"**Table 2, {DATASET_NAMES.get(dataset, dataset)}** (test, history masked; mean ± std over seeds)\n\n"
        return head + table(["backbone", "variant", "seeds", "HR@10", "NDCG@10", "TSLRec vs best other (NDCG@10)",
                             "unmasked HR@10 / NDCG@10", "paper (unmasked) HR@10 / NDCG@10"], rows) + \
            "\n\n" + caption(r, name, "paper-table2.json", command=False) + \
            " *p*: two-sample t-test over seeds; *unmasked*: the same weights under the paper's protocol; * the paper's star.\n"
    return block


def table1_block(files: dict[str, str]) -> Callable[[Results], str]:
    """Table 1 (dataset statistics) from the data stage of each experiment's chain."""
    def block(r: Results) -> str:
        rows = []
        for label, name in files.items():
            x = r(name)["upstream"]["data"]["result"]
            rows.append([label, f"{x['n_users']:,}", f"{x['n_items']:,}", f"{x['n_interactions']:,}", f"{x['density']:.2%}",
                         f"{x['avg_length']:.1f}"])
        return ("**Table 1, the datasets** (as the `data` stage read them; the paper's Table 1 has the same figures, "
                "checked by `tests/test_table1.py`)\n\n" +
                table(["dataset", "users", "items", "interactions", "density", "average length"], rows) + "\n\n" +
                caption(r, *files.values(), command=False) + "\n")
    return block


def tslrec_vs_base_block(files: dict[str, str]) -> Callable[[Results], str]:
    """One row per dataset x backbone: TSLRec minus Base, ours (masked, with p) and the paper's (unmasked)."""
    def block(r: Results) -> str:
        paper = paper_rows(r)
        rows = []
        for dataset, name in files.items():
            d = r(name)
            for b in BACKBONES:
                base, mine = summary_of(d, b, "base"), summary_of(d, b, "tslrec")
                if not base or not mine:
                    continue
                sg = sig_of(d, b, "base")
                diff = mine["mean"]["ndcg10"] - base["mean"]["ndcg10"]
                p = sg["p"] if sg else None
                alt = (mine.get("alt") or {}).get("ndcg10"), (base.get("alt") or {}).get("ndcg10")
                pb, pt = paper.get((dataset, b, "base")), paper.get((dataset, b, "tslrec"))
                rows.append([DATASET_NAMES.get(dataset, dataset), BACKBONE_NAMES.get(b, b), f4(base["mean"]["ndcg10"]),
                             f4(mine["mean"]["ndcg10"]),
                             f"{diff:+.4f} ({diff / base['mean']['ndcg10']:+.0%}), p = {pval(p)}", side(diff, p),
                             f"{alt[0] - alt[1]:+.4f}" if None not in alt else "-",
                             f"{pt['ndcg10'] - pb['ndcg10']:+.4f}" + ("*" if "ndcg10" in pt.get("starred", []) else "")
                             if pb and pt else "-"])
        return ("**TSLRec minus Base, test NDCG@10**, per dataset and backbone\n\n" +
                table(["dataset", "backbone", "Base", "TSLRec", "TSLRec - Base (ours, masked)", "verdict (p <= 0.05)",
                       "ours, unmasked", "paper (unmasked)"], rows) + "\n\n" +
                caption(r, *files.values(), "paper-table2.json", command=False) + "\n")
    return block


def variants_block(title: str, items: list[tuple[str, str, str]], note: str = "",
                   partial_note: str = "") -> Callable[[Results], str]:
    """Rows (label, file, backbone), columns Base / CI / TSLRec (test NDCG@10 mean ± std) and TSLRec vs Base.
    `partial_note` is shown only while a cell has fewer seeds than the table's fullest cell."""
    def block(r: Results) -> str:
        rows, seeds = [], []
        for label, name, b in items:
            d = r(name)
            cells = []
            for v in VARIANTS:
                s = summary_of(d, b, v)
                seeds.append(s["n_seeds"] if s else 0)
                cells.append(f"{pm(s['mean']['ndcg10'], s['std']['ndcg10'])} ({s['n_seeds']})" if s else "not run")
            sg = sig_of(d, b, "base")
            sh = sig_of(d, b, "base", metric="hr10")
            test = f"{sg['diff']:+.4f}, p = {pval(sg['p'])}" if sg and sg.get("diff") is not None else "-"
            if sh and sh.get("diff") is not None:
                test += f" (HR@10 {sh['diff']:+.4f}, p = {pval(sh['p'])})"
            rows.append([label] + cells + [test])
        names = list(dict.fromkeys(n for _, n, _ in items))
        notes = [note] + ([partial_note] if min(seeds) < max(seeds) else [])
        return (f"**{title}** (test NDCG@10, history masked, mean ± std (seeds))\n\n" +
                table(["", "Base", "CI", "TSLRec", "TSLRec - Base"], rows) + "\n\n" + caption(r, *names) +
                "".join(" " + n for n in notes if n) + "\n")
    return block


def twins_block(title: str, a: str, b: str, a_label: str, b_label: str) -> Callable[[Results], str]:
    """The same cells (backbone x variant) measured in two files: test NDCG@10 on each and the difference."""
    def block(r: Results) -> str:
        da, db = r(a), r(b)
        rows = []
        for bb in BACKBONES:
            for v in VARIANTS:
                sa, sb = summary_of(da, bb, v), summary_of(db, bb, v)
                if sa and sb:
                    rows.append([BACKBONE_NAMES[bb], v, f"{pm(sa['mean']['ndcg10'], sa['std']['ndcg10'])} ({sa['n_seeds']})",
                                 f"{pm(sb['mean']['ndcg10'], sb['std']['ndcg10'])} ({sb['n_seeds']})",
                                 f"{sa['mean']['ndcg10'] - sb['mean']['ndcg10']:+.4f}"])
        return (f"**{title}** (test NDCG@10, history masked, mean ± std (seeds))\n\n" +
                table(["backbone", "variant", a_label, b_label, "difference"], rows) + "\n\n" +
                caption(r, a, b, command=False) + "\n")
    return block


def e4srec_csv_block(csv_name: str, json_name: str) -> Callable[[Results], str]:
    """A `tslrec report` Table 2 CSV (it holds E4SRec's row, which no JSON file does)."""
    def block(r: Results) -> str:
        rows = [[x["backbone"], x["variant"]] + [v for k, v in x.items() if k not in ("backbone", "variant")]
                for x in r.csv_rows(csv_name)]
        header = ["backbone / method", "variant"] + [k for k in r.csv_rows(csv_name)[0] if k not in ("backbone", "variant")]
        return (f"**Table 2 with E4SRec** (`tslrec report` on one dataset; test, history masked, mean over seeds; "
                f"E4SRec: `sft.task=next_item`, MiniLM-L6, 1 epoch, seed 42)\n\n" + table(header, rows) + "\n\n" +
                f"Source: `{REL}/{csv_name}`, written by `tslrec report` from the runs of " + provenance(r, json_name) + "\n")
    return block


def backbones_block(name: str, dataset: str) -> Callable[[Results], str]:
    """Base backbones (benchmarks/backbones.py): masked and unmasked test metrics, the paper's Base row, cost."""
    def block(r: Results) -> str:
        d = r(name)
        paper = paper_rows(r)
        rows = []
        for b in BACKBONES:
            x = d["backbones"].get(b)
            if not x:
                continue
            s = x["summary"]
            alt = s["test_alt"]
            p = paper.get((dataset, b, "base"), {})
            rows.append([BACKBONE_NAMES[b], ", ".join(str(v) for v in s["seeds"]), pm(s["test"]["hr10"]["mean"], s["test"]["hr10"]["std"]),
                         pm(s["test"]["ndcg10"]["mean"], s["test"]["ndcg10"]["std"]),
                         " / ".join(f4(alt[m]["mean"]) for m in ("hr5", "hr10", "ndcg5", "ndcg10")),
                         " / ".join(f4(p.get(m)) for m in ("hr5", "hr10", "ndcg5", "ndcg10")),
                         f"{s['seconds_per_epoch']['mean']:.1f}", ", ".join(str(run["best_epoch"]) for run in x["runs"])])
        return (f"**Base backbones on {DATASET_NAMES.get(dataset, dataset)}** (fp32, test)\n\n" +
                table(["backbone", "seeds", "HR@10 (masked)", "NDCG@10 (masked)", "unmasked HR@5 / HR@10 / NDCG@5 / NDCG@10",
                       "paper Base (unmasked)", "s/epoch (mean)", "best epochs"], rows) + "\n\n" +
                caption(r, name, "paper-table2.json") + " Seconds per epoch: 1 torch thread beside other jobs.\n")
    return block


def maxlen_block(name: str) -> Callable[[Results], str]:
    def block(r: Results) -> str:
        d = r(name)
        rows = []
        for key, run in d["runs"].items():
            m = re.match(r"max_len_(\d+)", key)
            label = f"max_len {m.group(1)}" if m else key
            res = run.get("result")
            if res:
                rows.append([label, run.get("precision", "-"), run.get("machine", "-"), run.get("git_commit", "-"),
                             f4(res["test"]["ndcg10"]), f4(res["test_alt"]["ndcg10"]), f4(res["test"]["hr10"]),
                             res.get("best_epoch", "-"), f"{res['seconds_per_epoch']:.1f}"])
            else:
                rows.append([label, "fp32", "see " + run.get("source", "-"), "-", f4(run.get("test_ndcg10_masked")),
                             f4(run.get("test_ndcg10_unmasked")), f4(run.get("test_hr10_masked")), "-", "-"])
        paper = d.get("paper_sasrec_base_unmasked", {})
        return ("**SASRec's maximum length on ML-1M** (seed 42, test)\n\n" +
                table(["setting", "precision", "machine", "commit", "NDCG@10 masked", "NDCG@10 unmasked", "HR@10 masked",
                       "best epoch", "s/epoch"], rows) + "\n\n" +
                f"The paper's SASRec Base (unmasked): HR@10 {f4(paper.get('hr10'))}, NDCG@10 {f4(paper.get('ndcg10'))}. " +
                caption(r, name, command=False) + "\n")
    return block
