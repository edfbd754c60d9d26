"""benchmarks.lm_dropout: per item-text setting, the SFT at each sft.lm_dropout rate and the setting's cell on
every seed; the choice compares validation only; a rerun resumes from the file without training again."""
import json

from conftest import run_main, toy_with_titles

from benchmarks import lm_dropout
from benchmarks.common import set_flags

TINY = ["pretrain.trainer.epochs=2", "train.trainer.epochs=2", "pretrain.backbone.dim=16", "train.backbone.dim=16",
        "sft.batch_size=8", "sft.valid_fraction=0.2"]


def test_both_rates_per_setting_on_every_seed_chosen_on_validation(dirs, tmp_path, monkeypatch):
    cache, data = dirs
    toy_with_titles(data)
    out = tmp_path / "out.json"
    argv = ["--dataset", "toy", "--lm", "tiny-bert", "--seeds", 42, 43, "--threads", 1, "--cache-dir", cache,
            "--out", out, *set_flags(TINY)]
    run_main(lm_dropout, monkeypatch, *argv)
    body = json.loads(out.read_text())
    assert {(r["setting"], r["rate"], r["seed"]) for r in body["runs"]} == \
        {(s, r, seed) for s in ("title", "none") for r in ("model", "0") for seed in (42, 43)}
    for setting, source in (("title", "enhanced-tiny-bert-title"), ("none", "enhanced-tiny-bert")):
        summary = body["settings"][setting]
        assert summary["cell"]["source"] == source
        sft = summary["sft"]
        assert sft["model"]["key"] != sft["0"]["key"] and sft["model"]["valid_mse"] != sft["0"]["valid_mse"]
        cells = summary["cells"]
        assert cells["model"]["seeds"] == cells["0"]["seeds"] == [42, 43]
        assert summary["p_valid"] is not None and summary["p_test"] is not None
        best = max(cells, key=lambda rate: cells[rate]["valid_ndcg10"]["mean"])
        assert summary["choice_on_valid"] == best
    # the rate reached the SFT: its record's config says so
    assert json.loads(next((cache / "runs").rglob(f"{body['sft']['title']['0']['key']}.json")).read_text()
                      )["config"]["lm_dropout"] == 0.0

    run_main(lm_dropout, monkeypatch, *argv)                                # everything is in the file or the cache
    again = json.loads(out.read_text())
    assert again["runs"] == body["runs"] and all(v["cached"] for s in again["sft"].values() for v in s.values())


def test_a_bad_rate_or_a_dataset_without_text_is_a_one_line_error_and_no_file(dirs, tmp_path, monkeypatch, capsys):
    import pytest
    from conftest import toy

    cache, data = dirs
    toy(data)                                              # no toy.items.tsv
    out = tmp_path / "out.json"
    with pytest.raises(SystemExit) as bad_rate:
        run_main(lm_dropout, monkeypatch, "--dataset", "toy", "--rates", "model", "2", "--cache-dir", cache, "--out", out)
    assert bad_rate.value.code == 2 and "'2' is not an sft.lm_dropout value" in capsys.readouterr().err
    with pytest.raises(SystemExit) as no_text:
        run_main(lm_dropout, monkeypatch, "--dataset", "toy", "--seeds", 42, "--cache-dir", cache, "--out", out,
                 *set_flags(TINY))
    assert str(no_text.value.code).startswith("error: dataset 'toy' has no item text") and not out.exists()
