"""benchmarks.llm_runs runs E4SRec seed by seed through the runner; benchmarks.llm_baselines folds the runs
file into the baselines file (mean, std, test_alt, seconds, peak memory), in place of the measured cost."""
import json

import pytest
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


def test_merge_folds_per_seed_files_keeping_each_runs_origin(tmp_path):
    def runs_file(name, seed, commit, ndcg):
        run = {"method": "e4srec", "seed": seed, "test": {"ndcg10": ndcg}}
        f = tmp_path / name
        f.write_text(json.dumps({"command": f"run {seed}", "commit": commit, "machine": {"cpu": "x"},
                                 "dataset": "toy", "runs": [run]}))
        return f

    a, b = runs_file("a.json", 43, "c1", 0.1), runs_file("b.json", 42, "c1", 0.2)
    again = runs_file("c.json", 43, "c2", 0.3)                      # a later file's run replaces an earlier one's
    out = tmp_path / "merged.json"
    llm_runs.main(["--dataset", "toy", "--merge", str(a), str(b), "--out", str(out)])
    d = json.loads(out.read_text())
    assert [(r["seed"], r["command"], r["commit"]) for r in d["runs"]] == [(42, "run 42", "c1"), (43, "run 43", "c1")]
    assert d["commit"] == "c1" and d["merged_from"] == ["a.json", "b.json"]
    assert d["machine"] == {"cpu": "x"}                               # the runs', not the merging process's
    llm_runs.main(["--dataset", "toy", "--merge", str(out), str(again), "--out", str(out)])   # a merged file merges too
    d = json.loads(out.read_text())
    assert [(r["seed"], r["commit"], r["test"]["ndcg10"]) for r in d["runs"]] == [(42, "c1", 0.2), (43, "c2", 0.3)]
    assert d["commit"] is None and d["commits"] == ["c1", "c2"] and d["merged_from"] == ["a.json", "b.json", "c.json"]
    with pytest.raises(SystemExit, match="not 'beauty'"):
        llm_runs.main(["--dataset", "beauty", "--merge", str(a), "--out", str(out)])
