"""benchmarks/results_doc/text_cost.py: what item text costs the SFT, the attention kernel it trains with."""
from __future__ import annotations

from test_results_doc import SAMPLE, text_results

from benchmarks.results_doc import text_cost
from benchmarks.results_doc.load import Results


def test_text_cost_block_says_when_no_cost_file_is_committed():
    assert "no `text-budget-*.json` or `text-cost-*.json` committed yet" in text_cost.text_cost_block()(Results(SAMPLE.parent))


def test_text_cost_rows_give_seconds_ratio_and_items_shown(tmp_path):
    rows = [{"item_text": "none", "item_text_tokens": None, "step_seconds_mean": 1.0, "seconds_per_epoch_extrapolated": 200.0,
             "ratio_vs_none": 1.0, "mean_items_shown": 47.5},
            {"item_text": "title", "item_text_tokens": 16, "step_seconds_mean": 2.5, "seconds_per_epoch_extrapolated": 500.0,
             "ratio_vs_none": 2.5, "mean_items_shown": 12.25}]
    r = text_results(tmp_path, {"text-cost-beauty.json": {"command": "python -m benchmarks.text_cost", "git_commit": "a" * 40,
                                                          "machine": {"cpu": "AMD EPYC"}, "dataset": "beauty", "rows": rows}})
    out = text_cost.text_cost_block()(r)
    assert "| item_text | item_text_tokens | seconds per epoch | ratio vs none | mean items shown |" in out
    assert "| none | - | 200 s | 1.00x | 47.50 |" in out and "| title | 16 | 500 s | 2.50x | 12.25 |" in out
    assert "`benchmarks/results/text-cost-beauty.json`; commit aaaaaaa; machine: AMD EPYC" in out
    rows[0].update(mean_positions=29.7, positions_ratio_vs_none=1.0)
    rows[1].update(mean_positions=118.8, positions_ratio_vs_none=4.0)
    r = text_results(tmp_path, {"text-cost-beauty.json": {"dataset": "beauty", "rows": rows, "method": "cost strata"}})
    out = text_cost.text_cost_block()(r)
    assert "| mean items shown | prompt positions (vs none) |" in out and "| 12.25 | 118.8 (4.00x) |" in out
    assert "Method: cost strata." in out
    rows[1].update(attention="auto", ratio_vs_own_attention=0.5)
    rows.append({**rows[1], "attention": "own", "ratio_vs_own_attention": 1.0, "seconds_per_epoch_extrapolated": 1000.0})
    out = text_cost.text_cost_block()(text_results(tmp_path, {"text-cost-beauty.json": {"dataset": "beauty", "rows": rows}}))
    assert "| title | 16 | eager (the stage's, on the CPU) | 0.50x | 500 s |" in out
    assert "| title | 16 | SDPA (the model's own, as before) | 1.00x | 1,000 s |" in out
    runs = [{"item_text": "title", "item_text_tokens": 16, "seconds_per_epoch": 300.0, "valid_mse": 0.061,
             "valid_mse_mean_baseline": 0.359},
            {"item_text": "none", "item_text_tokens": None, "seconds_per_epoch": 120.0, "valid_mse": 0.065,
             "valid_mse_mean_baseline": 0.359}]
    r = text_results(tmp_path, {"text-budget-beauty.json": {"dataset": "beauty", "runs": runs}})   # text_budget.py's schema
    out = text_cost.text_cost_block()(r)
    assert "| title | 16 | 300 s | 2.50x | - | 0.0610 / 0.3590 |" in out and "| none | - | 120 s | 1.00x | - | 0.0650 / 0.3590 |" in out
    assert out.index("text-budget-beauty.json") < out.index("text-cost-beauty.json")
    runs[0]["cached"] = True                     # timed by an earlier process, under other load: no ratio
    out = text_cost.text_cost_block()(text_results(tmp_path, {"text-budget-beauty.json": {"dataset": "beauty", "runs": runs}}))
    assert "| title | 16 | 300 s (cached: timed by an earlier run) | - | - | 0.0610 / 0.3590 |" in out


def test_attention_kernel_block_shows_seconds_and_memory_by_kernel_and_length(tmp_path):
    row = {"kernel": "eager+dropout", "batch": 32, "length": 512, "step_seconds_median": 27.0,
           "seconds_ratio_vs_sdpa_dropout": 0.53, "peak_rss_mb": 5632.0, "rss_ratio_vs_sdpa_dropout": 0.58}
    assert text_cost.attention_kernel_block()(text_results(tmp_path, {})) == ""
    out = text_cost.attention_kernel_block()(text_results(tmp_path, {"attention-kernel-minilm.json": {"rows": [row]}}))
    assert "| eager+dropout | 512 | 27.00 | 0.53x | 5.5 | 0.58x |" in out


def test_text_cost_rows_at_two_lm_dropout_rates_say_which(tmp_path):
    rows = [{"item_text": t, "item_text_tokens": b, "attention": "auto", "lm_dropout": rate, "seconds_per_epoch_extrapolated": sec,
             "ratio_vs_none": sec / none, "ratio_vs_lm_dropout_model": sec / model, "mean_items_shown": 6.72}
            for rate, none in (("model", 400.0), ("0", 360.0))
            for t, b, sec, model in (("none", None, none, 400.0), ("title", 8, 1500.0 if rate == "model" else 1050.0, 1500.0))]
    out = text_cost.text_cost_block()(text_results(tmp_path, {"text-cost-beauty.json": {"dataset": "beauty", "rows": rows}}))
    assert "| item_text | item_text_tokens | sft.lm_dropout | time vs 'model' | seconds per epoch | ratio vs none (same lm_dropout) |" in out
    assert "| title | 8 | 0 | 0.70x | 1,050 s | 2.92x | 6.72 |" in out


def test_lm_dropout_block_shows_both_rates_and_the_choice_on_validation(tmp_path):
    from benchmarks import lm_dropout

    sft = {"model": {"valid_mse": 0.0627, "valid_mse_mean_baseline": 0.357, "seconds_per_epoch": 900.0, "peak_rss_mb": 9728},
           "0": {"valid_mse": 0.0601, "valid_mse_mean_baseline": 0.357, "seconds_per_epoch": 450.0, "peak_rss_mb": 4096}}
    runs = [{"setting": "title", "rate": rate, "seed": seed, "valid": {"ndcg10": v + dv}, "test": {"ndcg10": v + dv - 0.01},
             "seconds_per_epoch": 5.0} for rate, v in (("model", 0.05), ("0", 0.06)) for seed, dv in ((42, 0.0), (43, 0.001))]
    body = {"rates": ["model", "0"], "settings": {"title": lm_dropout.summarize("title", ["model", "0"], sft, runs)}}
    out = text_cost.lm_dropout_block()(text_results(tmp_path, {"lm-dropout-beauty.json": body}))
    assert "item text `title`** (SASRec `add` on `enhanced-minilm-title`; chosen on validation: `0`" in out
    assert "SFT time 0.50x" in out
    assert "| model | 0.0627 / 0.3570 | 900 s | 9.5 | 2 | 0.0505 ± 0.0007 | 0.0405 ± 0.0007 |" in out
    assert "| 0 | 0.0601 / 0.3570 | 450 s | 4.0 | 2 | 0.0605 ± 0.0007 | 0.0505 ± 0.0007 |" in out
    (tmp_path / "empty").mkdir()
    assert text_cost.lm_dropout_block()(text_results(tmp_path / "empty", {})) == ""


def test_dropout_draws_block_shows_each_seed_both_ways_and_the_means(tmp_path):
    from benchmarks import dropout_draws

    rows = [{"draws": d, "seed": s, "valid_mse": mse, "seconds_per_epoch": sec}
            for s, d, mse, sec in ((42, "fast", 0.0629, 266.0), (42, "torch", 0.0589, 320.0),
                                   (43, "torch", 0.0656, 360.0), (43, "fast", 0.0662, 270.0))]
    body = {"dataset": "beauty", "seeds": [42, 43], "rows": rows, "summary": dropout_draws.summarize(rows)}
    out = text_cost.dropout_draws_block()(text_results(tmp_path, {"dropout-draws-beauty.json": body}))
    assert "| 42 | 0.0629 (266 s) | 0.0589 (320 s) |" in out and "| 43 | 0.0662 (270 s) | 0.0656 (360 s) |" in out
    assert "| mean ± std | 0.0645 ± 0.0023 | 0.0622 ± 0.0047 |" in out
    assert "SFT epoch 0.79x torch's (medians)" in out


def test_run_all_block_gives_each_training_its_epochs_and_seconds_per_epoch(tmp_path):
    d = {"command": "python -m benchmarks.run_all_time", "wall_s": 1300.0, "limit_s": 1200.0, "within_limit": False,
         "stage_seconds": {"data": 0.2, "pretrain": 277.2, "sft": 600.0},
         "stage_epochs": {"pretrain": {"epochs_run": 38, "seconds_per_epoch": 5.5465},
                          "sft": {"epochs_run": None, "seconds_per_epoch": 590.0}}}
    out = text_cost.run_all_text_block()(text_results(tmp_path, {"run-all-beauty-title.json": d}))
    assert "1,300 s, over 1,200 s (data 0.20 s, pretrain 277 s (38 epochs at 5.55 s/epoch), sft 600 s (590 s/epoch))" in out


def test_run_all_block_names_the_data_parallel_sft_and_under_jobs_is_silent_until_measured(tmp_path):
    d = {"command": "python -m benchmarks.run_all_time", "wall_s": 1150.0, "limit_s": 1200.0,
         "within_limit": True, "run_all_jobs": None, "stage_seconds": {"sft": 520.0}, "data_parallel": {"sft": 2}}
    out = text_cost.run_all_text_block()(text_results(tmp_path, {"run-all-beauty-title.json": d}))
    assert "1,150 s, within 1,200 s" in out and "the sft trained data-parallel in 2 rank processes" in out
    block = text_cost.run_all_text_block("run-all-beauty-title-jobs1.json", jobs=1)
    one = dict(d, wall_s=1400.0, within_limit=False, run_all_jobs=1, data_parallel={})
    out = block(text_results(tmp_path, {"run-all-beauty-title-jobs1.json": one}))
    assert "--set sft.item_text=title --jobs 1` from a cold cache" in out
    assert "1,400 s, over 1,200 s" in out and "data-parallel" not in out
    again = text_cost.run_all_text_block("run-all-beauty-title-repeat.json", again=True)
    assert again(text_results(tmp_path, {})) == ""                       # silent until measured
    assert "sft.item_text=title` from a cold cache, again**: 1,150 s" in again(
        text_results(tmp_path, {"run-all-beauty-title-repeat.json": d}))
    (tmp_path / "none").mkdir()
    assert block(text_results(tmp_path / "none", {})) == ""
