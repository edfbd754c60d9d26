"""benchmarks.fusion_table: the README's fusion table from a fusion results file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cell(backbone, fusion, source, ndcg, p_base=None, p_pretrain=None, weights=None):
    metrics = {"hr5": ndcg, "hr10": 2 * ndcg, "ndcg5": ndcg, "ndcg10": ndcg}
    return {"backbone": backbone, "fusion": fusion, "source": source, "n_seeds": 3, "mean": metrics,
            "std": {k: 0.001 for k in metrics}, "valid_mean": metrics, "ensemble_weights": weights,
            "p_vs_base": None if p_base is None else {"ndcg10": p_base, "hr10": p_base},
            "p_vs_pretrain_source": None if p_pretrain is None else {"ndcg10": p_pretrain}}


def table(tmp_path: Path, cells: list[dict], *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "fusion-toy.json"
    path.write_text(json.dumps({"cells": cells, "choice_on_valid": {}}))
    return subprocess.run([sys.executable, "-m", "benchmarks.fusion_table", str(path), *extra],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_rows_come_base_first_in_fusion_order_and_only_significant_p_values_name_a_side(tmp_path):
    cells = [cell("sasrec", "gate", "pretrain", 0.055, p_base=0.01),
             cell("sasrec", "gate", "enhanced-minilm", 0.050, p_base=0.001, p_pretrain=0.2),
             cell("gru4rec", "base", None, 0.04),
             cell("sasrec", "ensemble", "none", 0.062, p_base=0.02, weights=[0.5, 0.4, 0.5]),
             cell("sasrec", "base", None, 0.058)]
    r = table(tmp_path, cells, "--csv", str(tmp_path / "t.csv"))
    assert r.returncode == 0, r.stderr
    rows = [[x.strip() for x in line.strip("|").split("|")] for line in r.stdout.splitlines() if line.startswith("| SASRec")]
    assert [(x[1], x[2]) for x in rows] == [("base", "-"), ("gate", "enhanced (MiniLM)"), ("gate", "pretrain"),
                                           ("ensemble (w = 0.5, 0.4, 0.5)", "none: base + base (control)")]
    assert rows[1][7] == "0.001 (worse)" and rows[1][8] == "0.2"     # p = 0.2 names no side
    assert rows[3][7] == "0.02 (better)"
    assert "GRU4Rec" not in r.stdout                        # default backbones: the strong ones
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 1 + 4


def test_a_file_that_is_no_fusion_result_is_a_one_line_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"runs": []}')
    r = subprocess.run([sys.executable, "-m", "benchmarks.fusion_table", str(path)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
