"""benchmarks.dropout_draws: the SFT on every seed with the stage's fast dropout masks and with torch's, run on
the cached inputs and never stored (the key cannot tell the two apart)."""
import json

import torch
from conftest import run_main, toy

from benchmarks import dropout_draws

TINY = ["pretrain.trainer.epochs=2", "pretrain.backbone.dim=16", "sft.model=tiny-bert", "sft.batch_size=8",
        "sft.valid_fraction=0.2", "group.k=4"]


def test_each_seed_trains_with_both_draws_and_nothing_is_stored(dirs, tmp_path, monkeypatch):
    cache, data = dirs
    toy(data)
    out = tmp_path / "out.json"
    run_main(dropout_draws, monkeypatch, "--dataset", "toy", "--seeds", 42, 43, "--cache-dir", cache, "--out", out,
             *(a for s in TINY for a in ("--set", s)))
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
