"""benchmarks.dropout_draws: the SFT on every seed with the stage's fast dropout masks and with torch's, run on
the cached inputs and never stored (the key cannot tell the two apart)."""
import json

import pytest
import torch
from conftest import run_main, toy

from benchmarks import dropout_draws
from benchmarks.common import set_flags

TINY = ["pretrain.trainer.epochs=2", "pretrain.backbone.dim=16", "sft.model=tiny-bert", "sft.batch_size=8",
        "sft.valid_fraction=0.2", "group.k=4"]


def test_each_seed_trains_with_both_draws_and_nothing_is_stored(dirs, tmp_path, monkeypatch):
    cache, data = dirs
    toy(data)
    out = tmp_path / "out.json"
    run_main(dropout_draws, monkeypatch, "--dataset", "toy", "--seeds", 42, 43, "--cache-dir", cache, "--out", out,
             *set_flags(TINY))
    body = json.loads(out.read_text())
    assert [(r["seed"], r["draws"]) for r in body["rows"]] == [(42, "fast"), (42, "torch"), (43, "torch"), (43, "fast")]
    mse = {(r["seed"], r["draws"]): r["valid_mse"] for r in body["rows"]}
    assert mse[42, "fast"] != mse[42, "torch"] and mse[42, "fast"] != mse[43, "fast"]    # other masks, other seed
    assert body["summary"]["fast"]["n_seeds"] == 2 and body["summary"]["p_valid_mse"] is not None
    assert not any('"stage": "sft"' in p.read_text() for p in (cache / "runs").rglob("*.json"))


def test_torch_draws_undo_the_swap_inside_only():
    import stages.sft as sft
    from stages.lm.dropout import FAST_EAGER

    with dropout_draws.drawn_by("torch"):
        model = torch.nn.Sequential(torch.nn.Dropout(0.1))
        sft.use_fast_dropout(model)
        assert type(model[0]) is torch.nn.Dropout and sft.FAST_EAGER == "eager"
    assert sft.FAST_EAGER == FAST_EAGER


def test_files_on_other_seeds_merge_into_one_summary(tmp_path, monkeypatch):
    rows = lambda seed, fast, torch_: [{"draws": "fast", "seed": seed, "valid_mse": fast, "seconds_per_epoch": 2.0},   # noqa: E731
                                       {"draws": "torch", "seed": seed, "valid_mse": torch_, "seconds_per_epoch": 3.0}]
    head = {"dataset": "beauty", "sets": [], "commit": "c", "command": "x", "wall_seconds": 1.0}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({**head, "seeds": [42, 43], "rows": rows(42, 0.061, 0.060) + rows(43, 0.066, 0.064)}))
    b.write_text(json.dumps({**head, "seeds": [45], "rows": rows(45, 0.062, 0.061)}))
    run_main(dropout_draws, monkeypatch, "--merge", a, b, "--out", tmp_path / "m.json")
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["seeds"] == [42, 43, 45] and m["summary"]["fast"]["n_seeds"] == 3
    assert m["summary"]["valid_mse_diff_by_seed"] == [pytest.approx(0.001), pytest.approx(0.002), pytest.approx(0.001)]
    assert 0 < m["summary"]["p_valid_mse_paired"] < m["summary"]["p_valid_mse"]
    b.write_text(json.dumps({**head, "commit": "d", "seeds": [45], "rows": rows(45, 0.062, 0.061)}))
    with pytest.raises(SystemExit, match="differ in commit"):
        run_main(dropout_draws, monkeypatch, "--merge", a, b, "--out", tmp_path / "m.json")


def test_an_unknown_dataset_or_an_unreadable_file_is_one_line_and_no_file(dirs, tmp_path, monkeypatch):
    cache, _ = dirs
    out = tmp_path / "out.json"
    with pytest.raises(SystemExit, match="^error: unknown dataset 'nosuch'"):
        run_main(dropout_draws, monkeypatch, "--dataset", "nosuch", "--seeds", 42, "--cache-dir", cache, "--out", out)
    with pytest.raises(SystemExit, match="^error: cannot read a file to merge"):
        run_main(dropout_draws, monkeypatch, "--merge", tmp_path / "missing.json", "--out", out)
    assert not out.exists()
