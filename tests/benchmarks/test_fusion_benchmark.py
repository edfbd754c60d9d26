"""benchmarks.fusion: cells through the runner and its cache, chosen on validation, never on test."""
from __future__ import annotations

import json
import sys

import pytest

import benchmarks.fusion as bench


def fake_run(backbone, fusion, source, seed, valid, test):
    return {"backbone": backbone, "fusion": fusion, "source": source, "seed": seed, "best_epoch": 1,
            "ensemble_weight": None, "valid": dict.fromkeys(["hr5", "hr10", "ndcg5", "ndcg10"], valid),
            "test": dict.fromkeys(["hr5", "hr10", "ndcg5", "ndcg10"], test)}


def test_benchmark_chooses_on_validation_never_on_test():
    runs = []
    for seed, jitter in ((1, 0.0), (2, 0.01), (3, 0.02)):
        runs += [fake_run("sasrec", "base", None, seed, 0.30 + jitter, 0.20 + jitter),
                 fake_run("sasrec", "add", "enhanced-minilm", seed, 0.40 + jitter, 0.10 + jitter),   # best on valid
                 fake_run("sasrec", "gate", "enhanced-minilm", seed, 0.20 + jitter, 0.50 + jitter),  # best on test
                 fake_run("sasrec", "add", "pretrain", seed, 0.35 + jitter, 0.30 + jitter)]
    cells = bench.summarize_cells(runs)
    choice = bench.choice_on_valid(cells)["sasrec"]
    assert (choice["fusion"], choice["source"], choice["beats_base_on_valid"]) == ("add", "enhanced-minilm", True)
    add = next(c for c in cells if c["fusion"] == "add" and c["source"] == "enhanced-minilm")
    assert add["n_seeds"] == 3 and add["mean"]["ndcg10"] == pytest.approx(0.11)
    assert add["p_vs_base"]["ndcg10"] < 0.05 and add["p_vs_pretrain_source"]["ndcg10"] < 0.05
    base = next(c for c in cells if c["fusion"] == "base")
    assert base["p_vs_base"] is None and base["source"] is None


def test_fusion_benchmark_end_to_end_resumes_from_the_cache(dirs, monkeypatch, tmp_path, capsys):
    """Tiny synthetic data, 1 epoch: every cell runs through the runner; a second, partial invocation is
    all cache hits and keeps the cells of the first in the file."""
    out = tmp_path / "fusion-synth.json"
    common = ["--dataset", "synthetic", "--seeds", "1", "2", "--threads", "1", "--out", str(out),
              "--set", "pretrain.trainer.epochs=1", "--set", "train.trainer.epochs=1", "--set", "pretrain.backbone.dim=16",
              "--set", "train.backbone.dim=16", "--set", "sft.model=tiny-llama"]

    def bench_main(*args):
        monkeypatch.setattr(sys, "argv", ["fusion.py", *common, *args])
        bench.main()
        return capsys.readouterr().err

    err = bench_main("--backbones", "sasrec", "--fusions", "add", "ensemble", "--sources", "enhanced-tiny-llama", "pretrain")
    assert "computing sft" in err and "computing augment" in err
    record = json.loads(out.read_text())
    cells = {(c["backbone"], c["fusion"], c["source"]): c for c in record["cells"]}
    assert set(cells) == {("sasrec", "base", None), ("sasrec", "add", "enhanced-tiny-llama"), ("sasrec", "add", "pretrain"),
                          ("sasrec", "ensemble", "enhanced-tiny-llama"), ("sasrec", "ensemble", "pretrain"),
                          ("sasrec", "ensemble", "none")}
    assert all(c["n_seeds"] == 2 for c in cells.values())
    assert cells[("sasrec", "add", "enhanced-tiny-llama")]["p_vs_pretrain_source"]["ndcg10"] is not None
    assert len(record["cells"][0]["valid_mean"]) == 4 and record["versions"]["torch"] and record["commit"]
    err = bench_main("--backbones", "sasrec", "--fusions", "add", "--sources", "pretrain", "--no-base")
    assert "computing" not in err and "(cached)" in err
    assert len(json.loads(out.read_text())["cells"]) == 6                # the first run's cells are kept


def test_fusion_benchmark_refuses_a_bad_source_before_running_anything(dirs, monkeypatch, tmp_path, capsys):
    out = tmp_path / "f.json"
    monkeypatch.setattr(sys, "argv", ["fusion.py", "--dataset", "synthetic", "--sources", "pretrain", "pretrained",
                                      "--out", str(out)])
    with pytest.raises(SystemExit) as e:
        bench.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "pretrained" in err and "computing" not in err and not out.exists()


def test_text_grid_budget_is_a_default_the_user_may_override_but_not_the_cell():
    cell = ("sasrec", "add", "enhanced-minilm-title")
    assert bench.cell_config("beauty", cell, 42, []).sft.item_text_tokens == 16      # the grid's budget, as it ran
    cfg = bench.cell_config("beauty", cell, 42, ["sft.item_text_tokens=8", "train.fusion=gate"])
    assert cfg.sft.item_text_tokens == 8 and cfg.sft.item_text == "title"
    assert cfg.train.fusion == "add"                                                  # the cell defines its fusion
