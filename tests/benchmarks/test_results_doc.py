"""benchmarks/results_doc/: RESULTS.md is generated from benchmarks/results/ and stays in step with it."""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.results_doc import document, stats, tables
from benchmarks.results_doc.load import Results

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
PACKAGE = ROOT / "benchmarks" / "results_doc"


def cell(backbone, fusion, source, ndcg, p_base=None, p_pretrain=None, weights=None):
    metrics = {"hr5": ndcg, "hr10": 2 * ndcg, "ndcg5": ndcg, "ndcg10": ndcg}
    return {"backbone": backbone, "fusion": fusion, "source": source, "n_seeds": 3, "seeds": [42, 43, 44],
            "mean": metrics, "std": {k: 0.001 for k in metrics}, "valid_mean": {k: v + 0.01 for k, v in metrics.items()},
            "ensemble_weights": weights, "p_vs_base": None if p_base is None else {"ndcg10": p_base, "hr10": p_base},
            "p_vs_pretrain_source": None if p_pretrain is None else {"ndcg10": p_pretrain}}


def test_committed_results_md_is_what_the_results_files_give():
    doc = document.render()
    assert (ROOT / "RESULTS.md").read_text(encoding="utf-8") == doc, \
        "RESULTS.md is out of date: run python -m benchmarks.results_doc"


def test_check_flag_fails_when_a_results_file_changes(tmp_path):
    """The comparison is real: a changed figure in a results file changes the document, and --check says so."""
    folder = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", folder)
    path = folder / "experiment-beauty.json"
    d = json.loads(path.read_text())
    s = next(x for x in d["summary"] if x["backbone"] == "sasrec" and x["variant"] == "tslrec")
    s["mean"]["ndcg10"] = 0.0999
    path.write_text(json.dumps(d))
    changed = document.render(Results(folder))
    assert changed != (ROOT / "RESULTS.md").read_text(encoding="utf-8") and "0.0999" in changed
    out = tmp_path / "RESULTS.md"
    out.write_text("stale\n")
    r = subprocess.run([sys.executable, "-m", "benchmarks.results_doc", "--check", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "out of date" in r.stderr


def test_cells_renderer_orders_rows_and_names_sides_only_where_p_is_small():
    d = {"cells": [cell("sasrec", "gate", "pretrain", 0.055, p_base=0.01),
                   cell("sasrec", "gate", "enhanced-minilm", 0.050, p_base=0.001, p_pretrain=0.2),
                   cell("sasrec", "base", None, 0.06),
                   cell("sasrec", "ensemble", "none", 0.062, p_base=0.03, weights=[0.5, 0.5, 0.4]),
                   cell("sasrec", "text", "mystery", 0.061, p_base=0.5)]}
    lines = tables.cells_table(d).splitlines()
    assert lines[0].startswith("| backbone | fusion | item table | seeds | valid NDCG@10 | test NDCG@10 |")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [(r[1].split(" ")[0], r[2]) for r in rows] == [
        ("base", "-"), ("gate", "enhanced (MiniLM)"), ("gate", "pretrain"), ("ensemble", "none: base + base (control)"),
        ("text", "mystery")]                                       # unknown fusions and tables come last, as named
    gate_enhanced = rows[1]
    assert gate_enhanced[5] == "0.0500 ± 0.0010" and gate_enhanced[4] == "0.0600"
    assert gate_enhanced[7] == "0.001 (worse)" and gate_enhanced[8] == "0.2"
    assert rows[3][1] == "ensemble (w = 0.5, 0.5, 0.4)" and rows[3][7] == "0.03 (better)"
    assert rows[4][7] == "0.5"


def test_an_unused_file_with_cells_is_rendered_in_the_appendix(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "text-beauty.json").write_text(json.dumps({
        "commit": "0123456789abcdef0123456789abcdef01234567", "machine": {"cpu": "AMD EPYC", "cores": 2, "torch_threads": 1},
        "cells": [cell("sasrec", "base", None, 0.06), cell("sasrec", "gate", "text-minilm", 0.058, p_base=0.2)]}))
    out = document.appendix(Results(folder))
    assert "`benchmarks/results/text-beauty.json`; commit 0123456; machine: AMD EPYC, 2 CPU cores, 1 torch thread" in out
    assert "| SASRec | gate | text alone (MiniLM) | 3 |" in out


def test_cells_renderer_names_text_tables_for_any_lm_and_puts_the_control_first():
    d = {"cells": [cell("sasrec", "gate", "mystery", 0.05), cell("sasrec", "gate", "enhanced-smollm2-title", 0.05),
                   cell("sasrec", "gate", "text-smollm2", 0.05), cell("sasrec", "gate", "enhanced-minilm-all", 0.05),
                   cell("sasrec", "gate", "pretrain", 0.05)]}
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in tables.cells_table(d).splitlines()[2:]]
    assert [r[2] for r in rows] == ["pretrain", "text alone (SmolLM2)", "TSLRec SFT with all item text (MiniLM)",
                                    "TSLRec SFT with titles (SmolLM2)", "mystery"]
    assert tables.text_control("enhanced-smollm2-title") == "text-smollm2" and tables.text_control("enhanced-minilm") is None
    assert tables.source_name("text-minilm-all") == "text alone, every column (MiniLM)"
    assert tables.source_name("text-my-lm") == "text alone (my-lm)"


def test_t_test_agrees_with_the_p_values_the_results_files_hold():
    """The generator's own t-test (no scipy) gives the p-values benchmarks/fusion.py stored with scipy."""
    d = json.loads((ROOT / "benchmarks" / "results" / "fusion-beauty.json").read_text())
    checked = 0
    for c in d["cells"]:
        p = (c.get("p_vs_base") or {}).get("ndcg10")
        if p is None:
            continue
        mine = tables._per_seed(d, c["backbone"], c["fusion"], c["source"])
        base = tables._per_seed(d, c["backbone"], "base", None)
        assert stats.ttest_p(mine, base) == pytest.approx(p, rel=1e-6, abs=1e-12)
        checked += 1
    assert checked > 40
    assert stats.ttest_p([1.0], [2.0, 3.0]) is None and stats.ttest_p([1.0, 1.0], [1.0, 1.0]) is None


def test_paper_table2_json_is_the_paper_table_the_report_uses():
    from pipeline.paper_table2 import PAPER_TABLE2, STARS

    rows = json.loads((ROOT / "benchmarks" / "results" / "paper-table2.json").read_text())["rows"]
    assert {(r["dataset"], r["method"], r["variant"]): {m: r[m] for m in ("hr5", "hr10", "ndcg5", "ndcg10")}
            for r in rows} == PAPER_TABLE2
    assert {(r["dataset"], r["method"], m) for r in rows for m in r["starred"]} == STARS


def test_generator_stays_cheap_stdlib_only_and_off_sys_path():
    """Every module of the package imports the standard library or its siblings only, and none edits sys.path."""
    modules = sorted(PACKAGE.glob("*.py"))
    assert {m.name for m in modules} >= {"__init__.py", "__main__.py", "load.py", "sections.py"}
    for module in modules:
        source = module.read_text(encoding="utf-8")
        tree = ast.parse(source)
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module}
        assert imported <= {"__future__", "argparse", "csv", "json", "math", "re", "sys", "dataclasses", "pathlib", "typing"}, \
            module.name
        assert all(node.level == 1 for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level), module.name
        assert "sys.path" not in source, module.name
        assert len(source.splitlines()) <= 420, f"{module.name}: keep each module to one idea (about 400 lines at most)"


def test_product_documents_name_no_session_and_the_readme_stays_a_manual():
    docs = [ROOT / "README.md", ROOT / "RESULTS.md", *sorted((ROOT / "docs").glob("*.md"))]
    for path in docs:
        text = path.read_text(encoding="utf-8")
        hit = re.search(r"\bsessions? \d", text, re.IGNORECASE)
        assert hit is None, f"{path.name} names a session: {text[max(0, hit.start() - 60):hit.end() + 30]!r}"
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300


# ---------------------------------------------------------------- item text (section 6)

SAMPLE = ROOT / "tests" / "fixtures" / "text-sample.json"   # a tiny run of benchmarks/text.py: SASRec, seeds 42-43


def text_results(tmp_path, files):
    """tmp_path/results with the paper's Table 2 and `files` (name -> dict) added to what earlier calls wrote there."""
    folder = tmp_path / "results"
    folder.mkdir(exist_ok=True)
    shutil.copy(ROOT / "benchmarks" / "results" / "paper-table2.json", folder)
    for name, d in files.items():
        (folder / name).write_text(json.dumps(d))
    return Results(folder)


def passing(d, seeds=(42, 43, 44), p=0.01):
    """The sample with its text-only choice (add on text alone) and Base on 3 seeds, the choice at p against Base,
    for SASRec and FMLP-Rec."""
    d = json.loads(json.dumps(d))
    for c in d["cells"]:
        if (c["fusion"], c["source"]) == ("add", "text-tiny-bert"):
            c["n_seeds"], c["seeds"], c["p_vs_base"] = 3, list(seeds), {"ndcg10": p, "hr10": p}
        if c["fusion"] == "base":
            c["n_seeds"], c["seeds"] = 3, list(seeds)
    d["choice_on_valid"]["sasrec"]["text_only"].update(n_seeds=3, p_vs_base={"ndcg10": p, "hr10": p})
    d["cells"] += [{**c, "backbone": "fmlprec"} for c in d["cells"]]
    d["choice_on_valid"]["fmlprec"] = d["choice_on_valid"]["sasrec"]
    return d


def test_text_section_renders_the_sample_run(tmp_path):
    from benchmarks.results_doc import item_text

    r = text_results(tmp_path, {"text-beauty.json": json.loads(SAMPLE.read_text())})   # the sample stands in for Beauty's
    out = item_text.text_dataset_block("beauty")(r)
    assert "the file's dataset: `tiny`; settings: `pretrain.trainer.epochs=2`" in out
    assert "| backbone | fusion | item table | seeds | valid NDCG@10 | test NDCG@10 | test HR@10 | p vs Base | " \
           "p vs text alone, same LM and fusion |" in out
    assert "| SASRec | add | text alone (tiny-bert) | 2 | 0.6042 | 0.5530 ± 0.0406 | 0.7250 | 0.02 (better) |  |" in out
    assert "| SASRec | gate | TSLRec SFT with titles (tiny-bert) | 2 | 0.3423 | 0.3369 ± 0.0494 | 0.5833 | 0.75 |  |" in out
    assert "- SASRec, text alone: add on text alone (tiny-bert), 2 seeds (valid NDCG@10 0.6042, above Base's 0.2801): " \
           "test NDCG@10 0.5530, p vs Base 0.02" in out
    assert "| cell | popularity 8-11 (7 users, 6 items) | popularity 12-13 (13 users, 6 items) | " \
           "popularity 14-17 (16 users, 9 items) | popularity 18 (10 users, 4 items) | popularity 19-25 (14 users, 9 items) |" in out
    assert "| SASRec, Base | 0.5446 | 0.2615 | 0.2872 | 0.3125 | 0.3174 |" in out
    assert "| SASRec, TSLRec's SFT with item text: gate on TSLRec SFT with titles (tiny-bert) | 0.5332 |" in out
    verdict = next(line for line in out.splitlines() if line.startswith("- **SASRec**"))
    assert "add on text alone (tiny-bert), test NDCG@10 0.5530 against Base's 0.3229, p = 0.02, 2 seeds: " \
           "not shown (2 seeds, not 3)" in verdict
    assert "gate on TSLRec SFT with titles (tiny-bert)" in verdict and "above Base but p = 0.75 > 0.05" in verdict
    assert "not above the text-only control on test (0.3369 against 0.4478)" in verdict
    missing = item_text.target_missing(r)
    assert missing[0].startswith("Beauty, SASRec: text alone (add): 2 seeds, not 3;") and "FMLP-Rec: not in the file" in missing[0]
    assert missing[1] == "neither ML-1M nor Yelp passes (ML-1M: not run yet (no `text-ml-1m.json`); " \
                         "Yelp: not run yet (no `text-yelp.json`))"
    assert item_text.text_dataset_block("yelp")(r).startswith("**Item text on Yelp**: not run yet")


def test_text_target_needs_three_seeds_p_replication_and_a_second_dataset(tmp_path):
    from benchmarks.results_doc import item_text

    sample = json.loads(SAMPLE.read_text())
    r = text_results(tmp_path, {"text-beauty.json": passing(sample)})
    verdict = next(line for line in item_text.text_dataset_block("beauty")(r).splitlines() if line.startswith("- **FMLP-Rec**"))
    assert "3 seeds: above Base at p <= 0.05 with 3 seeds; not replicated yet (no replication file)" in verdict
    assert item_text.target_missing(r)[0].startswith("Beauty, SASRec: text alone (add): not replicated yet")

    r = text_results(tmp_path, {"text-beauty-replication.json": passing(sample)})          # the same seeds again
    assert "replication: seeds 42, 43, 44, not 45-47" in item_text.target_missing(r)[0]
    r = text_results(tmp_path, {"text-beauty-replication.json": passing(sample, seeds=(45, 46, 47), p=0.2)})
    assert "replication: above Base but p = 0.2 > 0.05" in item_text.target_missing(r)[0]
    r = text_results(tmp_path, {"text-beauty-replication.json": passing(sample, seeds=(45, 46, 47))})
    assert "with 3 seeds; held on seeds 45, 46, 47" in item_text.text_dataset_block("beauty")(r)
    assert "**Item text on Beauty: replication**" in item_text.text_dataset_block("beauty")(r)
    assert item_text.target_missing(r) == ["neither ML-1M nor Yelp passes (ML-1M: not run yet (no `text-ml-1m.json`); "
                                           "Yelp: not run yet (no `text-yelp.json`))"]
    r = text_results(tmp_path, {"text-yelp.json": passing(sample), "text-yelp-replication.json": passing(sample, (45, 46, 47))})
    assert item_text.target_missing(r) == [] and "**Met** by the files below." in item_text.text_target_block()(r)


def test_text_profile_is_warranted_only_where_beautys_choice_beats_base_on_every_datasets_validation(tmp_path):
    from benchmarks.results_doc import item_text

    sample = passing(json.loads(SAMPLE.read_text()))
    r = text_results(tmp_path, {"text-beauty.json": sample, "text-yelp.json": sample})
    lines = item_text.profile_lines(r)
    assert len(lines) == 2 and all(line.endswith("ML-1M: not run; Yelp 0.6042 above Base's 0.2801 (3 seeds): no text profile")
                                   for line in lines)
    below = json.loads(json.dumps(sample))
    for c in below["cells"]:
        if c["fusion"] == "add" and c["backbone"] == "sasrec":
            c["valid_mean"]["ndcg10"] = 0.2
    r = text_results(tmp_path, {"text-ml-1m.json": below})
    sasrec, fmlp = item_text.profile_lines(r)
    assert "ML-1M 0.2000 not above Base's 0.2801" in sasrec and sasrec.endswith("no text profile")
    assert fmlp.endswith("above Base on every dataset, so a text profile is warranted: `--profile text`")
    assert "**A text profile?**" in item_text.text_profile_block()(r)
    two = json.loads(json.dumps(below))          # FMLP-Rec's text cell on ML-1M with 2 seeds only
    for c in two["cells"]:
        if c["backbone"] == "fmlprec" and c["fusion"] != "base":
            c["n_seeds"] = 2
    r = text_results(tmp_path, {"text-ml-1m.json": two})
    assert item_text.profile_lines(r)[1].endswith("but ML-1M has fewer than 3 seeds: no text profile until it has them")


# ---------------------------------------------------------------- the paper's LLM baselines (section 7)

def summary(backbone, variant, ndcg):
    metrics = {"hr5": ndcg, "hr10": 2 * ndcg, "ndcg5": ndcg, "ndcg10": ndcg}
    return {"backbone": backbone, "variant": variant, "n_seeds": 3, "mean": metrics, "std": {k: 0.001 for k in metrics},
            "alt": {"mask_history": False, **{k: v - 0.005 for k, v in metrics.items()}}}


def not_run(hours, epochs, source, runs_it):
    return {"n_seeds": 0, "seeds": [], "mean": None, "std": None, "test_alt": None, "train_seconds": None, "peak_rss_mb": None,
            "not_run": {"hours_per_epoch": hours, "epochs": epochs, "hours_per_seed": hours * epochs, "source": source,
                        "commit": "b" * 40, "detail": f"{source} timed", "what_would_run_it": runs_it}}


def test_llm_baselines_renderer_sets_measured_beside_the_paper_and_says_what_did_not_run(tmp_path):
    from benchmarks.results_doc import baselines

    ran = {"n_seeds": 3, "seeds": [42, 43, 44], "mean": {"hr10": 0.05, "ndcg10": 0.03}, "std": {"hr10": 0.001, "ndcg10": 0.002},
           "test_alt": {"hr10": 0.045, "ndcg10": 0.025}, "train_seconds": 3600.0, "peak_rss_mb": 2048.0}
    r = text_results(tmp_path, {
        "experiment-beauty.json": {"summary": [summary("sasrec", "base", 0.0577), summary("sasrec", "tslrec", 0.0531)]},
        "llm-baselines-beauty.json": {"command": "python -m benchmarks.llm_baselines --dataset beauty", "methods": {
            "llamarec": ran, "p5": not_run(152.6, 10, "p5-cost-beauty.json", "a GPU and T5"),
            "pod": not_run(17.1, 1, "p5-cost-beauty.json", "a GPU and T5")}}})
    out = baselines.baselines_table(r, "beauty", "experiment-beauty.json")
    assert "| method | paper (unmasked) | ours (masked) | ours (unmasked) | ours: what ran |" in out
    assert "| LlamaRec | 0.0862 / 0.0492 | 0.0500 ± 0.0010 / 0.0300 ± 0.0020 (3) | 0.0450 / 0.0250 | " \
           "ran: seeds 42, 43, 44, 3,600 s training, peak RSS 2.0 GiB |" in out
    assert "| P5 | 0.0791 / 0.0474 | not run | not run | not run: measured 152.6 h per epoch x 10 epochs = 1,526.0 h " \
           "per seed (`p5-cost-beauty.json`) |" in out
    assert "| POD | 0.0245 / 0.0146 | not run | not run | not run: measured 17.1 h per epoch x 1 epoch = 17.1 h" in out
    assert "| E4SRec | 0.0753 / 0.0448 | not run | not run | not run; its cost is not measured on this dataset |" in out
    assert "- P5: p5-cost-beauty.json timed (`p5-cost-beauty.json`, commit bbbbbbb). What would run it: a GPU and T5." in out
    assert "- POD: p5-cost-beauty.json timed (`p5-cost-beauty.json`, commit bbbbbbb). What would run it: as for P5." in out
    assert "| SASRec, Base | 0.0846 / 0.0424 | 0.1154 ± 0.0010 / 0.0577 ± 0.0010 (3) | 0.1104 / 0.0527 | " \
           "measured (`experiment-beauty.json`) |" in out
    assert "| FMLP-Rec, TSLRec | 0.0852 / 0.0509* | not run | - | not run |" in out      # the paper's row, none of ours
    assert out.index("| E4SRec |") < out.index("| GRU4Rec, Base |")
    yelp = baselines.baselines_table(r, "yelp", "experiment-yelp.json")
    assert "| LlamaRec | 0.0605 / 0.0367 | not run | not run | not run (no results file yet) |" in yelp
    assert "No `llm-baselines-yelp.json` yet" in yelp
    assert "history not masked (RecBole full-sort)" in baselines.llm_baselines_block({"beauty": "experiment-beauty.json"})(r)


# ---------------------------------------------------------------- the README's generated blocks

def test_readme_blocks_are_rendered_from_the_files_and_checked(tmp_path):
    from benchmarks.results_doc import readme
    marked = "intro\n<!-- results_doc: item-text-beside-table2 -->\nstale figures\n<!-- /results_doc -->\noutro\n"
    filled = readme.fill(marked, Results())
    assert "stale figures" not in filled and filled.startswith("intro\n") and filled.endswith("<!-- /results_doc -->\noutro\n")
    assert "| Beauty | SASRec |" in filled and readme.fill(filled, Results()) == filled
    path = tmp_path / "README.md"
    path.write_text(marked)
    r = subprocess.run([sys.executable, "-m", "benchmarks.results_doc", "--check", "--readme", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "README.md is out of date" in r.stderr
    with pytest.raises(ValueError, match="unknown results_doc block"):
        readme.fill("<!-- results_doc: nope -->\n<!-- /results_doc -->", Results())


def test_committed_readme_blocks_are_what_the_results_files_give():
    from benchmarks.results_doc import readme
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "<!-- results_doc: item-text-beside-table2 -->" in text
    assert readme.fill(text, Results()) == text, "README.md is out of date: run python -m benchmarks.results_doc"


def test_a_gap_the_t_test_does_not_support_is_marked_not_significant():
    from benchmarks.results_doc.beside_table2 import _side
    cell = {"mean": {"ndcg10": 0.1916}}
    assert _side(cell, 0.1915, 0.96, "Base") == "above Base, p = 0.96, not significant"
    assert _side(cell, 0.1800, 0.012, "Base") == "above Base, p = 0.012"
    assert _side(cell, 0.1950, None, "Base") == "below Base, p = -"


def test_the_text_profile_is_what_the_committed_results_warrant():
    """`--profile text` exists exactly while the results warrant it, and is the configuration they warrant:
    Beauty's validation choice of fusion for that backbone, the text alone read by encode's default model."""
    from benchmarks.results_doc import item_text
    from benchmarks.results_doc.tables import BACKBONE_NAMES
    from pipeline.overrides import PROFILES
    from schemas.encode import EncodeConfig

    r = Results()
    said = "so a text profile is warranted: `--profile text`"
    warranted = [b for b in item_text.TARGET_BACKBONES for line in item_text.profile_lines(r)
                 if line.startswith(f"- {BACKBONE_NAMES[b]}, ") and line.endswith(said)]
    if not warranted:
        assert "text" not in PROFILES
        return
    (backbone,) = warranted                      # one profile, one backbone
    chosen = r("text-beauty.json")["choice_on_valid"][backbone]["text_only"]
    assert chosen["source"] == f"text-{EncodeConfig().model.split('-')[0]}"          # text-minilm <- minilm-l6
    assert PROFILES["text"] == {"train.backbone.name": backbone, "train.variant": "tslrec",
                                "train.fusion": chosen["fusion"], "train.source": "text"}


def test_variants_block_says_partial_only_while_a_cell_has_fewer_seeds(tmp_path):
    from benchmarks.results_doc.experiments import variants_block

    def experiment(n_ci):
        def row(v, n):
            return {"backbone": "sasrec", "variant": v, "n_seeds": n, "mean": {"ndcg10": 0.05}, "std": {"ndcg10": 0.001}}
        return {"summary": [row("base", 3), row("ci", n_ci), row("tslrec", 3)]}

    block = variants_block("T", [("SASRec", "experiment-x.json", "sasrec")], partial_note="Partial: X.")
    assert "Partial: X." in block(text_results(tmp_path, {"experiment-x.json": experiment(1)}))
    assert "Partial" not in block(text_results(tmp_path, {"experiment-x.json": experiment(3)}))
