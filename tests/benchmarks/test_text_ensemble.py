"""benchmarks.text_ensemble mixes the cached Base and text-cell models of a `benchmarks.text run` file (no
training), chooses w on validation, and its runs merge into the text file as the `ensemble` cell."""
import json

import pytest
from conftest import run_main as main
from conftest import toy_with_titles

from benchmarks import text, text_ensemble
from benchmarks.common import set_flags
from stages.core.ensemble import WEIGHTS

TINY = ["pretrain.trainer.epochs=2", "train.trainer.epochs=2", "pretrain.backbone.dim=16", "train.backbone.dim=16",
        "encode.model=tiny-bert"]


def test_the_ensemble_of_cached_base_and_text_models_and_its_control(dirs, tmp_path, monkeypatch):
    cache, data = dirs
    toy_with_titles(data)
    runs = tmp_path / "runs.json"
    main(text, monkeypatch, "run", "--dataset", "toy", "--backbones", "sasrec", "--seeds", 42, 43, "--cells",
         "add:text-tiny-bert", "--threads", 1, "--cache-dir", cache, "--out", runs, *set_flags(TINY))
    ens, ctrl = tmp_path / "ens.json", tmp_path / "ctrl.json"
    main(text_ensemble, monkeypatch, runs, "--cache-dir", cache, "--cell", "add:text-tiny-bert", "--out", ens)
    main(text_ensemble, monkeypatch, runs, "--cache-dir", cache, "--seeds", 42, 43, "--control-seeds", 43, 42, "--out", ctrl)
    src = {(r["fusion"], r["seed"]): r for r in json.loads(runs.read_text())["runs"]}
    mixed = json.loads(ens.read_text())["runs"]
    assert [(r["fusion"], r["source"], r["seed"]) for r in mixed] == [("ensemble", "text-tiny-bert", s) for s in (42, 43)]
    for r in mixed:
        assert r["ensemble_weight"] in WEIGHTS and r["members"]["base"] == src[("base", r["seed"])]["key"]
        by_w = r["valid_ndcg10_by_weight"]    # w = 0 is Base's model, w = 1 the text cell's, as their runs recorded
        assert by_w["0.0"] == pytest.approx(src[("base", r["seed"])]["valid"]["ndcg10"], abs=1e-4)
        assert by_w["1.0"] == pytest.approx(src[("add", r["seed"])]["valid"]["ndcg10"], abs=1e-4)
        assert r["valid"]["ndcg10"] == max(by_w.values()) and all(m <= 0.01 for m in r["members"]["valid_ranks_moved"])
    control = json.loads(ctrl.read_text())["runs"]
    assert [(r["source"], r["members"]["cell_seed"]) for r in control] == [("none", 43), ("none", 42)]

    merged = tmp_path / "merged.json"
    text.merge([runs, ens, ctrl], merged)
    cells = {(c["fusion"], c["source"]): c for c in json.loads(merged.read_text())["cells"]}
    assert cells[("ensemble", "text-tiny-bert")]["n_seeds"] == 2 and cells[("ensemble", "none")]["n_seeds"] == 2
    assert cells[("ensemble", "text-tiny-bert")]["p_vs_ensemble_control"] is not None


def test_a_cell_the_runs_file_lacks_is_a_one_line_error(tmp_path, monkeypatch):
    runs = tmp_path / "runs.json"
    runs.write_text(json.dumps({"dataset": "toy", "runs": []}))
    with pytest.raises(SystemExit, match="no seed has both members"):
        main(text_ensemble, monkeypatch, runs, "--cache-dir", tmp_path, "--cell", "add:text-minilm", "--out", tmp_path / "o.json")
