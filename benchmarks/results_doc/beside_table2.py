"""Item text beside Table 2: per dataset and strong backbone, the paper's TSLRec row, our Base and TSLRec
(Table 2's runs), and the validation-chosen cells of the item-text files, in test NDCG@10.

The one block both RESULTS.md (section 6) and the README's findings show; the README gets it between markers
(readme.py), so neither copy is written by hand."""
from __future__ import annotations

from typing import Any, Callable

from .experiments import paper_rows, summary_of
from .item_text import (ALPHA, KINDS, TARGET_BACKBONES, TEXT_DATASETS, _above, _cell, _ensembles, _ndcg, assess,
                        replication_file, text_file)
from .load import Results
from .tables import BACKBONE_NAMES, DATASET_NAMES, f4, own_sets, pm, pval, table, text_control


def _ms(c: dict[str, Any] | None) -> str:
    """mean ± std, and the number of seeds where it is not the table's 3."""
    if not c:
        return "-"
    n = c.get("n_seeds")
    return pm(c["mean"]["ndcg10"], c["std"]["ndcg10"]) + (f" ({n} seeds)" if n not in (None, 3) else "")


def _chosen(d: dict[str, Any], rep: dict[str, Any] | None, backbone: str, kind: str) -> str:
    """The validation-chosen cell of one kind: NDCG@10, fusion, p vs Base, and whether it replicated."""
    ch = ((d.get("choice_on_valid") or {}).get(backbone) or {}).get(kind)
    a = assess(d, rep, backbone, kind)
    if not ch or a is None:
        return "not run"
    if a["problems"]:
        held = ""
    elif a["replication"] == []:
        held = ", replicated"
    elif _cell(rep, backbone, ch["fusion"], ch["source"]) is None:
        held = ", not replicated yet"
    else:
        held = ", did not replicate"
    c = _cell(d, backbone, ch["fusion"], ch["source"])
    parts = [ch["fusion"] + own_sets(c or {}, d), _side(c, a["base"], a["p"], "Base")]
    control = text_control(ch["source"])
    if control is not None:
        parts.append(_side(c, _ndcg(_cell(d, backbone, ch["fusion"], control)),
                           ((c or {}).get("p_vs_text_only") or {}).get("ndcg10"), "text alone"))
    return f"{_ms(c)} ({'; '.join(parts)}{held})"


def _mixed(d: dict[str, Any], rep: dict[str, Any] | None, backbone: str) -> str:
    """Base mixed with the text cell (benchmarks.text_ensemble): NDCG@10 against Base and against Base + Base."""
    found = _ensembles(d, backbone)
    if not found:
        return "not run"
    c, ctrl = found[0], _cell(d, backbone, "ensemble", "none")
    sides = [_side(c, _ndcg(_cell(d, backbone, "base", None)), (c.get("p_vs_base") or {}).get("ndcg10"), "Base"),
             _side(c, _ndcg(ctrl), (c.get("p_vs_ensemble_control") or {}).get("ndcg10"), "Base + Base")]
    rc = _cell(rep, backbone, "ensemble", c["source"])
    if rc is not None:
        problems = _above(_ndcg(rc), _ndcg(_cell(rep, backbone, "base", None)), (rc.get("p_vs_base") or {}).get("ndcg10"), "Base") + \
            _above(_ndcg(rc), _ndcg(_cell(rep, backbone, "ensemble", "none")),
                   (rc.get("p_vs_ensemble_control") or {}).get("ndcg10"), "Base + Base")
        sides.append("did not replicate" if problems else "replicated")
    return f"{_ms(c)} ({'; '.join(sides)})"


def _side(c: dict[str, Any] | None, ref: float | None, p: float | None, what: str) -> str:
    """'above Base, p = 0.007' (or below), from the cell's mean test NDCG@10 against `ref`'s; a gap the t-test
    does not support (p > ALPHA) says so, so that 'above Base, p = 0.96' is not read as a gain."""
    if c is None or ref is None:
        return f"no {what} to compare"
    weak = ", not significant" if p is not None and p > ALPHA else ""
    return f"{'above' if c['mean']['ndcg10'] > ref else 'below'} {what}, p = {pval(p)}{weak}"


def beside_table2_block() -> Callable[[Results], str]:
    def block(r: Results) -> str:
        paper = paper_rows(r)
        rows = []
        for ds in TEXT_DATASETS:
            exp = r(f"experiment-{ds}.json") if r.has(f"experiment-{ds}.json") else {}
            d = r(text_file(ds)) if r.has(text_file(ds)) else None
            rep = r(replication_file(ds)) if r.has(replication_file(ds)) else None
            for b in TARGET_BACKBONES:
                p = paper.get((ds, b, "tslrec"))
                base = _cell(d, b, "base", None) if d else None
                base = base or summary_of(exp, b, "base")
                rows.append([DATASET_NAMES.get(ds, ds), BACKBONE_NAMES[b], f4(p["ndcg10"]) if p else "-", _ms(base),
                             _ms(summary_of(exp, b, "tslrec"))] +
                            [_chosen(d, rep, b, kind) if d else "not run" for kind in KINDS] +
                            [_mixed(d, rep, b) if d else "not run"])
        return ("**Item text beside Table 2** (test NDCG@10; ours history masked, mean ± std over 3 seeds; the paper's "
                "unmasked, Llama2-13B; TSLRec = the paper's configuration, no item text; the item-text cells are each "
                "file's validation-chosen cell, with its fusion and its t-tests against Base (and, for the SFT, against "
                "the text alone through the same fusion); *mixed*: Base's and the text-alone cell's models mixed, w chosen on "
                "validation, against Base and against two Base models mixed; *replicated*: it held on seeds 45-47)\n\n" +
                table(["dataset", "backbone", "paper TSLRec", "Base", "TSLRec", *(f"{v} (chosen)" for v in KINDS.values()),
                       "Base + text alone, mixed"],
                      rows) + "\n\nSources: `experiment-<dataset>.json` (Table 2), `text-<dataset>.json` and "
                "`text-<dataset>-replication.json`, `paper-table2.json`.\n")
    return block
