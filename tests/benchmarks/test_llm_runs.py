"""benchmarks.llm_runs runs E4SRec seed by seed through the runner; benchmarks.llm_baselines folds the runs
file into the baselines file (mean, std, test_alt, seconds, peak memory), in place of the measured cost."""
import json

from conftest import toy

import benchmarks.llm_baselines as llm_baselines
from benchmarks import llm_runs

TINY = ["pretrain.trainer.epochs=2", "sft.model=tiny-bert", "pretrain.backbone.dim=16", "sft.epochs=1"]


def test_e4srec_runs_two_seeds_resumes_and_becomes_the_baselines_row(dirs, tmp_path, monkeypatch, capsys):
    cache, data = dirs
    toy(data, users=40)
    out = tmp_path / "results" / "llm-runs-toy.json"
    args = ["--dataset", "toy", "--methods", "e4srec", "--seeds", "42", "43", "--threads", "1", "--out", str(out),
            *(x for s in TINY for x in ("--set", s))]
    llm_runs.main(args)
    runs = json.loads(out.read_text())["runs"]
    assert [(r["method"], r["seed"], r["cached"]) for r in runs] == [("e4srec", 42, False), ("e4srec", 43, False)]
    assert runs[0]["key"] != runs[1]["key"] and runs[0]["test_alt"] and runs[0]["peak_rss_mb"] > 0
    assert all(r["test_alt"]["hr10"] <= r["test"]["hr10"] for r in runs)   # unmasked ranks are never better
    llm_runs.main(args)                                                     # a rerun is all cache hits
    assert all(r["cached"] for r in json.loads(out.read_text())["runs"])

    monkeypatch.setattr(llm_baselines, "RESULTS", out.parent)
    row = llm_baselines.ran("toy", "e4srec")
    ndcg = [r["test"]["ndcg10"] for r in runs]
    assert row["n_seeds"] == 2 and row["seeds"] == [42, 43] and row["not_run"] is None
    assert abs(row["mean"]["ndcg10"] - sum(ndcg) / 2) < 1e-12 and row["std"]["ndcg10"] >= 0
    assert row["test_alt"] is not None and row["source"] == "llm-runs-toy.json"
    assert llm_baselines.ran("toy", "llamarec") is None                    # no runs: the cost file speaks for it
