"""The README's fusion table from a fusion-<dataset>.json (`benchmarks.fusion` or `benchmarks.grid merge`).

    python -m benchmarks.fusion_table benchmarks/results/fusion-beauty.json > table.md
    python -m benchmarks.fusion_table benchmarks/results/fusion-beauty.json --csv table.csv

One row per cell (backbone x fusion x item table): seeds, mean validation NDCG@10 (the only figure that
chooses anything), test NDCG@10 and HR@10, and the p-values the file holds, marked better/worse where
p <= 0.05. The cells of the `--backbones` (default SASRec and FMLP-Rec, the issue's strong backbones)
come in a fixed order: Base, then each fusion with its tables; the validation choice follows the table.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.fusion import BACKBONES, CONTROLS
from pipeline.report import markdown
from schemas.names import FUSIONS

FUSION_ORDER = ["base", *FUSIONS]
SOURCE_ORDER = ["enhanced-minilm", "enhanced-smollm2", *CONTROLS, "none", None]
BACKBONE_NAMES = {"sasrec": "SASRec", "fmlprec": "FMLP-Rec", "gru4rec": "GRU4Rec", "caser": "Caser"}
SOURCE_NAMES = {"enhanced-minilm": "enhanced (MiniLM)", "enhanced-smollm2": "enhanced (SmolLM2)",
                "none": "none: base + base (control)", None: "-"}
HEADER = ["backbone", "fusion", "item table", "seeds", "valid NDCG@10", "test NDCG@10", "test HR@10", "p vs Base",
          "p vs same fusion, pretrain table"]


def _rank(order: list, value: Any) -> int:
    return order.index(value) if value in order else len(order)


def ordered(cells: list[dict[str, Any]], backbones: list[str]) -> list[dict[str, Any]]:
    keep = [c for c in cells if c["backbone"] in backbones]
    return sorted(keep, key=lambda c: (backbones.index(c["backbone"]), _rank(FUSION_ORDER, c["fusion"]),
                                       _rank(SOURCE_ORDER, c["source"]), str(c["source"])))


def p_text(p: float | None, mine: float, reference: float | None) -> str:
    """'0.0034 (worse)': the side is named only where the test says the difference is real."""
    if p is None or reference is None:
        return ""
    side = f" ({'better' if mine > reference else 'worse'})" if p <= 0.05 else ""
    return f"{p:.2g}{side}"


def row(cell: dict[str, Any], cells: list[dict[str, Any]]) -> list[str]:
    def ndcg_of(fusion: str, source: str | None) -> float | None:
        ref = next((c for c in cells if (c["backbone"], c["fusion"], c["source"]) == (cell["backbone"], fusion, source)), None)
        return ref["mean"]["ndcg10"] if ref else None

    mine = cell["mean"]["ndcg10"]
    weights = cell.get("ensemble_weights")
    fusion = cell["fusion"] + (f" (w = {', '.join(str(w) for w in weights)})" if weights else "")
    p_base = (cell.get("p_vs_base") or {}).get("ndcg10")
    p_pretrain = (cell.get("p_vs_pretrain_source") or {}).get("ndcg10")
    return [BACKBONE_NAMES.get(cell["backbone"], cell["backbone"]), fusion, SOURCE_NAMES.get(cell["source"], cell["source"]),
            str(cell["n_seeds"]), f"{cell['valid_mean']['ndcg10']:.4f}", f"{mine:.4f} ± {cell['std']['ndcg10']:.4f}",
            f"{cell['mean']['hr10']:.4f}", p_text(p_base, mine, ndcg_of("base", None)),
            p_text(p_pretrain, mine, ndcg_of(cell["fusion"], "pretrain"))]


def choice_lines(choice: dict[str, Any], backbones: list[str]) -> str:
    out = []
    for b in backbones:
        c = choice.get(b)
        if c:
            verdict = "above" if c["beats_base_on_valid"] else "not above"
            out.append(f"- {BACKBONE_NAMES.get(b, b)}: best on validation: {c['fusion']} on {SOURCE_NAMES.get(c['source'], c['source'])} "
                       f"(valid NDCG@10 {c['valid_ndcg10']:.4f}, {verdict} Base's {c['base_valid_ndcg10']:.4f})")
    return "\n".join(out) + ("\n" if out else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="a fusion-<dataset>.json")
    ap.add_argument("--backbones", nargs="+", default=BACKBONES)
    ap.add_argument("--csv", type=Path, help="also write the rows as CSV here")
    args = ap.parse_args()
    try:
        data = json.loads(args.results.read_text())
        cells = data["cells"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"error: {args.results}: not a fusion results file ({type(e).__name__}: {e})") from None
    rows = [row(c, cells) for c in ordered(cells, args.backbones)]
    if args.csv:
        with args.csv.open("w", newline="") as f:
            csv.writer(f).writerows([HEADER, *rows])
    sys.stdout.write(markdown(HEADER, rows) + "\n" + choice_lines(data.get("choice_on_valid", {}), args.backbones))


if __name__ == "__main__":
    main()
