"""Formatting helpers, display names, and the generic blocks: markdown tables, static text, and the cells
table of any results file with a `cells` list (the schema of fusion-beauty.json).

A block is a function that reads results files through `Results` and returns markdown."""
from __future__ import annotations

import re
from typing import Any, Callable

from .load import Results, caption
from .stats import ttest_p

BACKBONES = ["gru4rec", "caser", "sasrec", "fmlprec"]
BACKBONE_NAMES = {"sasrec": "SASRec", "fmlprec": "FMLP-Rec", "gru4rec": "GRU4Rec", "caser": "Caser"}
VARIANTS = ["base", "ci", "tslrec"]
DATASET_NAMES = {"beauty": "Beauty", "yelp": "Yelp", "ml-1m": "ML-1M"}
CELL_BACKBONES = ["sasrec", "fmlprec", "gru4rec", "caser"]
FUSION_ORDER = ["base", "gate", "add", "init", "dual", "nullspace", "ensemble"]
SOURCE_ORDER = ["enhanced-minilm", "enhanced-smollm2", "pretrain", "random", "none", None]
SOURCE_NAMES = {"enhanced-minilm": "enhanced (MiniLM)", "enhanced-smollm2": "enhanced (SmolLM2)",
                "none": "none: base + base (control)", None: "-"}
LM_NAMES = {"minilm": "MiniLM", "smollm2": "SmolLM2"}
TEXT_SOURCE = re.compile(r"text-(.+?)(-all)?")                 # the LM's reading of the item text alone, no SFT
TEXT_ENHANCED_SOURCE = re.compile(r"enhanced-(.+)-(title|all)")  # TSLRec's SFT with item text in the prompt


def source_name(source: str | None) -> str:
    """A cell's item table as the tables name it: the fixed names, then `text-LM` and `enhanced-LM-title` (or
    `-all`) for any LM, else the name as it is."""
    if source in SOURCE_NAMES:
        return SOURCE_NAMES[source]
    m = TEXT_ENHANCED_SOURCE.fullmatch(str(source))
    if m:
        return f"TSLRec SFT with {'titles' if m.group(2) == 'title' else 'all item text'} " \
               f"({LM_NAMES.get(m.group(1), m.group(1))})"
    m = TEXT_SOURCE.fullmatch(str(source))
    if m:
        return f"text alone{', every column' if m.group(2) else ''} ({LM_NAMES.get(m.group(1), m.group(1))})"
    return str(source)


def text_control(source: str | None) -> str | None:
    """The text-only control of a text-enhanced table (`enhanced-LM-title` -> `text-LM`); None for any other."""
    m = TEXT_ENHANCED_SOURCE.fullmatch(str(source))
    return f"text-{m.group(1)}" if m else None


# ---------------------------------------------------------------- formatting

def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def f4(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def pm(mean: float | None, std: float | None) -> str:
    return "-" if mean is None else f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def pval(p: float | None) -> str:
    return "-" if p is None else f"{p:.2g}"


def secs(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f} s" if x >= 100 else f"{x:.1f} s" if x >= 10 else f"{x:.2f} s"


def side(diff: float, p: float | None) -> str:
    """'better' / 'worse' where p <= 0.05, else 'level'."""
    if p is None:
        return "no test"
    return ("better" if diff > 0 else "worse") if p <= 0.05 else "level"


# ---------------------------------------------------------------- static text

def text(s: str) -> Callable[[Results], str]:
    return lambda r: s.strip() + "\n"


def figure_list(items: list[tuple[str, str]]) -> Callable[[Results], str]:
    """Figures recorded only in a commit's text (no results file holds them): the figure and where it is recorded."""
    def block(r: Results) -> str:
        return "**Figures without a results file** (recorded only in the text of the commit named)\n\n" + \
            "\n".join(f"- {fig} ({where})" for fig, where in items) + "\n"
    return block


def _rank(order: list[Any], value: Any) -> int:
    return order.index(value) if value in order else len(order)


def _source_rank(source: str | None) -> int:
    """The fixed tables in SOURCE_ORDER, then text-only tables, then text-enhanced ones, then unknown ones."""
    if source in SOURCE_ORDER:
        return SOURCE_ORDER.index(source)
    if TEXT_ENHANCED_SOURCE.fullmatch(str(source)):
        return len(SOURCE_ORDER) + 1
    return len(SOURCE_ORDER) + (0 if TEXT_SOURCE.fullmatch(str(source)) else 2)


def _cell_order(c: dict[str, Any]) -> tuple:
    return (_rank(CELL_BACKBONES, c.get("backbone")), str(c.get("backbone")), _rank(FUSION_ORDER, c.get("fusion")),
            str(c.get("fusion")), _source_rank(c.get("source")), str(c.get("source")))


def _p_side(p: float | None, mine: float, ref: float | None) -> str:
    if p is None:
        return ""
    return f"{p:.2g}" + (f" ({'better' if ref is not None and mine > ref else 'worse'})" if p <= 0.05 and ref is not None else "")


AGAINST_PRETRAIN = [("p vs same fusion, pretrain table", "p_vs_pretrain_source", lambda source: "pretrain")]


def own_sets(c: dict[str, Any], d: dict[str, Any]) -> str:
    """The --set a cell ran with beyond its file's shared ones (', `k=v`'), or ''."""
    own = [s for s in c.get("sets") or [] if s not in (d.get("sets") or [])]
    return "".join(f", `{s}`" for s in own)


def cells_table(d: dict[str, Any], backbones: list[str] | None = None,
                against: list[tuple[str, str, Callable[[Any], Any]]] | None = None) -> str:
    """The generic table of a `cells` list: one row per cell (backbone x fusion x item table), in a fixed order.

    A cell holds backbone, fusion, source, n_seeds, mean and std (metric dicts), and optionally valid_mean,
    p_vs_base, p_vs_pretrain_source (metric -> p) and ensemble_weights. Unknown fusions and sources come last,
    named as they are. `against`: the last columns, each (header, the cell's key of p-values, the source of the
    cell compared with, given the cell's source); by default the same fusion on the pretrain table."""
    against = AGAINST_PRETRAIN if against is None else against
    cells = sorted((c for c in d["cells"] if backbones is None or c.get("backbone") in backbones), key=_cell_order)

    def ndcg(backbone: str, fusion: str, source: str | None) -> float | None:
        ref = next((c for c in d["cells"] if (c.get("backbone"), c.get("fusion"), c.get("source")) == (backbone, fusion, source)), None)
        return ref["mean"]["ndcg10"] if ref else None

    rows = []
    for c in cells:
        mine = c["mean"]["ndcg10"]
        weights = c.get("ensemble_weights")
        fusion = str(c.get("fusion")) + (f" (w = {', '.join(str(w) for w in weights)})" if weights else "")
        valid = (c.get("valid_mean") or {}).get("ndcg10")
        rows.append([BACKBONE_NAMES.get(c.get("backbone"), str(c.get("backbone"))), fusion,
                     source_name(c.get("source")) + own_sets(c, d), c.get("n_seeds", "-"), f4(valid),
                     pm(mine, (c.get("std") or {}).get("ndcg10")), f4(c["mean"].get("hr10")),
                     _p_side((c.get("p_vs_base") or {}).get("ndcg10"), mine, ndcg(c.get("backbone"), "base", None))] +
                    [_p_side((c.get(key) or {}).get("ndcg10"), mine,
                             None if ref(c.get("source")) is None else ndcg(c.get("backbone"), c.get("fusion"), ref(c.get("source"))))
                     for _, key, ref in against])
    return table(["backbone", "fusion", "item table", "seeds", "valid NDCG@10", "test NDCG@10", "test HR@10", "p vs Base"] +
                 [header for header, _, _ in against], rows)


def cells_block(name: str, title: str, backbones: list[str] | None = None, note: str = "") -> Callable[[Results], str]:
    def block(r: Results) -> str:
        d = r(name)
        text = f"**{title}** (test metrics history masked, mean ± std over seeds; valid = mean validation NDCG@10, " \
               "the only figure that chooses; p = two-sample t-test on test NDCG@10)\n\n" + cells_table(d, backbones)
        choice = d.get("choice_on_valid") or {}
        lines = [f"- {BACKBONE_NAMES.get(b, b)}: {c['fusion']} on {source_name(c['source'])} "
                 f"(valid NDCG@10 {c['valid_ndcg10']:.4f}, {'above' if c['beats_base_on_valid'] else 'not above'} "
                 f"Base's {c['base_valid_ndcg10']:.4f})" for b, c in sorted(choice.items(), key=lambda kv: _rank(CELL_BACKBONES, kv[0]))
                 if backbones is None or b in backbones]
        if lines:
            text += "\n\nChosen on validation:\n\n" + "\n".join(lines)
        n_cmd = len(d["commands"]) if isinstance(d.get("commands"), list) else 0
        return text + "\n\n" + caption(r, name) + (f" The file lists the {n_cmd} commands that made its runs." if n_cmd else "") + \
            (" " + note if note else "") + "\n"
    return block


def _per_seed(d: dict[str, Any], backbone: str, fusion: str, source: str | None, metric: str = "ndcg10") -> list[float]:
    return [x["test"][metric] for x in d.get("runs", [])
            if (x.get("backbone"), x.get("fusion"), x.get("source")) == (backbone, fusion, source)]


def cells_diff_block(name: str, against: str, title: str, backbones: list[str], sources: list[str]) -> Callable[[Results], str]:
    """Per fusion, an enhanced table minus `against` (same backbone and fusion): difference and t-test on test NDCG@10."""
    def block(r: Results) -> str:
        d = r(name)
        means = {(c["backbone"], c["fusion"], c["source"]): c["mean"]["ndcg10"] for c in d["cells"]}
        fusions = [f for f in FUSION_ORDER if f != "base" and any(k[1] == f for k in means)]
        header = ["fusion"] + [f"{BACKBONE_NAMES[b]}, {source_name(s)}" for b in backbones for s in sources]
        rows = []
        for fu in fusions:
            row = [fu]
            for b in backbones:
                for s in sources:
                    if (b, fu, s) in means and (b, fu, against) in means:
                        diff = means[(b, fu, s)] - means[(b, fu, against)]
                        p = ttest_p(_per_seed(d, b, fu, s), _per_seed(d, b, fu, against))
                        row.append(f"{diff:+.4f} (p = {pval(p)})")
                    else:
                        row.append("-")
            if any(c != "-" for c in row[1:]):
                rows.append(row)
        return (f"**{title}** (test NDCG@10, mean over seeds; p: two-sample t-test over the seeds' runs in the file)\n\n" +
                table(header, rows) + "\n\n" + caption(r, name, command=False) + "\n")
    return block
