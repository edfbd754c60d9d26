"""`tslrec report`: Table 2 across datasets (markdown, CSV), the paper's Table 2 next to ours, Fig. 4's
legend and Fig. 5 for every backbone with error bars over seeds."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pipeline import figures
from pipeline.paper_table2 import PAPER_TABLE2
from pipeline.report import fig5_title, merge_by_dataset, paper_vs_ours, table2, table2_cells, write_table2_csv
from pipeline.stats import significance, summarize


def run(variant, seed, ndcg10, backbone="sasrec"):
    return {"backbone": backbone, "variant": variant, "seed": seed, "seconds_per_epoch": 1.0,
            "test": {"hr5": ndcg10 * 1.2, "hr10": ndcg10 * 2, "ndcg5": ndcg10 * 0.8, "ndcg10": ndcg10},
            "test_alt": {"mask_history": False, "hr5": 0.01, "hr10": 0.02, "ndcg5": 0.005, "ndcg10": ndcg10 / 2}}


def experiment(dataset: str, base: float, ours: float, backbones=("sasrec",)) -> dict:
    runs = [run(v, s, x + 0.001 * s, b) for b in backbones for v, x in (("base", base), ("ci", base), ("tslrec", ours))
            for s in range(3)]
    rows = summarize(runs)
    return {"dataset": dataset, "mask_history": True, "summary": rows, "significance": significance(rows)}


def test_one_table2_across_datasets_md_and_csv(tmp_path):
    exps = [experiment("beauty", 0.05, 0.06), experiment("ml-1m", 0.19, 0.18, backbones=("sasrec", "gru4rec"))]
    header, rows = table2(exps)
    assert header[2:] == [f"{d} {m}" for d in ("beauty", "ml-1m") for m in ("HR@5", "HR@10", "NDCG@5", "NDCG@10")]
    by = {(r[0], r[1]): r for r in rows}
    assert by[("sasrec", "tslrec")][5] == "**0.0610 ± 0.0010***"          # beauty NDCG@10: best, significant
    assert by[("sasrec", "tslrec")][9] == "<u>0.1810 ± 0.0010†</u>"      # ml-1m: significantly worse
    assert by[("gru4rec", "base")][2:6] == ["-"] * 4                     # no GRU4Rec on beauty
    _, cells = table2_cells(exps)
    write_table2_csv(tmp_path / "t.csv", cells)
    lines = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert len(lines) == (3 + 6) * 4                                     # dataset x row x metric
    one = next(x for x in lines if (x["dataset"], x["backbone"], x["variant"], x["metric"]) == ("beauty", "sasrec", "tslrec", "ndcg10"))
    assert (float(one["mean"]), float(one["std"]), one["n_seeds"], one["mark"]) == (pytest.approx(0.061), pytest.approx(0.001), "3", "*")


def test_paper_table2_next_to_ours():
    assert PAPER_TABLE2[("ml-1m", "sasrec", "tslrec")]["ndcg10"] == 0.1965
    assert PAPER_TABLE2[("beauty", "e4srec", "-")]["hr10"] == 0.0753
    assert len(PAPER_TABLE2) == 3 * 16
    md = paper_vs_ours([experiment("beauty", 0.05, 0.06)])
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line for line in md.splitlines() if line.startswith("| beauty")}
    assert len(rows) == 16                                               # every published Beauty row
    ours = rows[("beauty", "sasrec", "tslrec")]
    assert "0.0854" in ours and "0.0458" in ours                          # the paper's HR@10, NDCG@10
    assert "0.1220 ± 0.0020*" in ours and "0.0305" in ours                # ours (masked) and ours unmasked (test_alt)
    assert rows[("beauty", "caser", "base")].count("| - ") == 4           # not run
    assert "history not masked" in md and "history masked" in md          # both protocols named


def test_fig4_says_what_c1_c2_c3_mean(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(figures.plt, "close", lambda fig: seen.append(fig))
    figures.fig4_agreement({"beauty": {"c1": 0.8, "c2": 0.15, "c3": 0.05}}, tmp_path / "f4.png")
    texts = [t.get_text() for t in seen[0].axes[0].get_legend().get_texts()]
    assert any(t.startswith("C1: the LLM's top-1 category is the item's pre-group") for t in texts)
    assert any(t.startswith("C2:") and "top 3" in t for t in texts) and any(t.startswith("C3:") for t in texts)


def test_report_draws_fig5_for_every_backbone_with_error_bars(cli, tmp_path, monkeypatch):
    assert cli("data", "synth", "--name", "toy", "--users", "50", "--items", "20").code == 0
    tiny = ["--set", "pretrain.trainer.epochs=1", "--set", "train.trainer.epochs=1", "--set", "pretrain.backbone.dim=8",
            "--set", "train.backbone.dim=8", "--set", "group.k=3"]
    r = cli("--threads", "1", "run", "all", "--dataset", "toy", "--seeds", "2", "--backbones", "sasrec,gru4rec",
            "--variants", "base,ci", *tiny, "--json")
    assert r.code == 0, r.err
    drawn = {}
    real = figures.fig5_activity

    def spy(groups, labels, counts, title, path):
        drawn[path.name] = (groups, labels, counts)
        return real(groups, labels, counts, title, path)

    monkeypatch.setattr("pipeline.report.fig5_activity", spy)
    rep = cli("report", "--out", str(tmp_path / "rep"), "--json")
    assert rep.code == 0, rep.err
    files = json.loads(rep.out)["files"]
    assert {"fig5_toy_sasrec", "fig5_toy_gru4rec"} <= set(files)
    for name in ("fig5_toy_sasrec.png", "fig5_toy_gru4rec.png"):
        groups, labels, counts = drawn[name]
        assert sum(counts) == 50 and len(labels) == len(counts) and set(groups) == {"base", "ci"}
        assert all(len(groups[v]["ndcg10"]) == len(labels) for v in groups)
        assert any(std > 0 for v in groups for _, std in groups[v]["hr10"])   # two seeds: a spread to show
        assert Path(files[name[:-4]]).read_bytes()[:4] == b"\x89PNG"


def test_experiments_of_one_dataset_pool_their_rows_and_more_seeds_win():
    three = experiment("beauty", 0.05, 0.04)                                        # SASRec, 3 seeds
    one = summarize([run(v, 0, x, b) for b in ("sasrec", "caser") for v, x in (("base", 0.03), ("tslrec", 0.05))])
    single = {"dataset": "beauty", "mask_history": True, "summary": one, "significance": significance(one)}
    header, rows = table2(merge_by_dataset([single, three]))
    assert len(header) == 6                                                         # one set of beauty columns
    by = {(r[0], r[1]): r for r in rows}
    assert by[("sasrec", "tslrec")][5].startswith("0.0410 ± 0.0010†")              # the 3-seed row and its t-test
    assert by[("caser", "tslrec")][5] == "<u>0.0500 (n=1)</u>"                      # the 1-seed experiment's own row (second)


def test_fig5_finds_the_users_lengths_when_the_experiments_data_run_was_made_elsewhere(cli, dirs, tmp_path):
    """Merged runs from a lent GPU carry another torch, so other keys: the data run made here from the
    same file with the same result stands in for it; a different result does not."""
    from pipeline.cache import Cache
    from pipeline.report import fig5_for, latest_experiments

    assert cli("data", "synth", "--name", "toy", "--users", "30", "--items", "15").code == 0
    tiny = ["--set", "pretrain.trainer.epochs=1", "--set", "train.trainer.epochs=1", "--set", "pretrain.backbone.dim=8",
            "--set", "train.backbone.dim=8", "--set", "group.k=3"]
    assert cli("--threads", "1", "run", "all", "--dataset", "toy", "--variants", "base,ci", *tiny).code == 0
    exp = latest_experiments(dirs[0])[0]
    exp["upstream"]["data"]["key"] = "0" * 64                                  # not in this cache
    assert set(fig5_for(exp, Cache(dirs[0]), tmp_path)) == {"fig5_toy_sasrec"}
    runs = exp["runs"]
    exp["runs"] = [r if r["variant"] == "base" else {**r, "key": "1" * 64} for r in runs]   # ci's ranks elsewhere
    assert fig5_for(exp, Cache(dirs[0]), tmp_path) == {}                       # base alone of base and ci: no figure
    exp["runs"] = runs
    exp["upstream"]["data"]["result"] = {**exp["upstream"]["data"]["result"], "n_users": 31}
    assert fig5_for(exp, Cache(dirs[0]), tmp_path) == {}


def test_fig5_title_names_uneven_seeds_and_variants_whose_ranks_are_elsewhere():
    assert fig5_title("beauty", "sasrec", {"base": 3, "ci": 3}, []) == \
        "beauty, sasrec: test metrics by user activity (mean ± std over 3 seeds)"
    t = fig5_title("ml-1m", "caser", {"ci": 3, "tslrec": 2}, ["base"])
    assert "seeds: ci 3, tslrec 2" in t and t.endswith("; base: ranks not in this cache)")
