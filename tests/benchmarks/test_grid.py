"""benchmarks.grid: plans and the merge of per-job files into one experiment file per dataset."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.grid import plan
from benchmarks.grid_merge import merge

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("hr5", "hr10", "ndcg5", "ndcg10")


@pytest.mark.parametrize("name", ["gpu", "gpu-rest", "gpu-ml-1m", "cpu-beauty", "cpu-beauty-rest", "cpu-ensemble-control", "cpu-fusion-rest", "cpu-yelp", "gpu-final", "cpu-ml-1m-gpu-twins", "cpu-beauty-paper", "tiny"])
def test_every_plan_names_each_job_once(name):
    names = [n for n, _ in plan(name)]
    assert names and len(names) == len(set(names))


def test_cpu_yelp_finishes_a_backbone_before_starting_the_next():
    backbones = [n.split("-")[2] for n, _ in plan("cpu-yelp")]
    assert backbones == sorted(backbones, key=backbones.index)     # contiguous blocks
    assert backbones[:3] == ["sasrec"] * 3


def test_gpu_ml1m_starts_the_chain_and_every_base_training_before_any_ci_or_tslrec():
    names = [n for n, _ in plan("gpu-ml-1m")]
    assert names[0] == "chain-ml-1m" and len(names) == 1 + 4 * 3 * 3
    variants = [n.rsplit("-", 1)[1] for n in names[1:]]
    assert variants == sorted(variants, key=["base", "ci", "tslrec"].index)
    assert names[variants.count("base")] == "t2-ml-1m-sasrec-42-base"    # the chain's pretrain twin: last base


def test_the_pretrain_twin_is_the_chains_own_pretrain():
    from pipeline.experiment import is_pretrain_twin
    from pipeline.overrides import build_config

    job = dict(plan("gpu-ml-1m"))["t2-ml-1m-sasrec-42-base"]
    cfg = build_config(sets=["data.dataset=ml-1m", job[job.index("--set") + 1], "train.variant=base",
                             f"train.backbone.name={job[job.index('--backbones') + 1]}"])
    assert is_pretrain_twin(cfg)


def test_gpu_final_holds_exactly_the_missing_ml1m_cells_and_the_paper_grid():
    names = [n for n, _ in plan("gpu-final")]
    assert names[:2] == ["chain-ml-1m", "chain-beauty-paper"]
    ml = {n for n in names if n.startswith("t2-ml-1m-")}
    done_in_session_6 = {"t2-ml-1m-sasrec-42-tslrec", "t2-ml-1m-sasrec-44-tslrec"} | {f"t2-ml-1m-sasrec-{s}-ci" for s in (42, 43, 44)}
    assert ml == {n for n, _ in plan("gpu-ml-1m") if n.endswith(("-ci", "-tslrec"))} - done_in_session_6
    paper = [n for n in names if n.startswith("pt2-beauty-")]
    assert len(paper) == 2 * 3 * 3 and paper[0].endswith("-base")


def test_cpu_ml1m_gpu_twins_and_the_cpu_sessions_cells_make_the_whole_grid_once():
    twins = [n for n, _ in plan("cpu-ml-1m-gpu-twins")]
    cpu_sessions = {n for n, _ in plan("gpu-final") if n.startswith("t2-ml-1m-")}     # what sessions 8-9 ran here
    assert twins[0] == "chain-ml-1m" and not set(twins) & cpu_sessions
    assert set(twins[1:]) | cpu_sessions == {n for n, _ in plan("gpu-ml-1m")[1:]}
    assert all("-sasrec-" in n for n in twins[1:9]) and all(n.endswith("-base") for n in twins[9:])


def test_cpu_beauty_paper_trains_other_bases_while_the_chain_pretrains_its_twin():
    names = [n for n, _ in plan("cpu-beauty-paper")]
    assert names[0] == "chain-beauty-paper" and set(names[1:]) == {n for n, _ in plan("gpu-final") if n.startswith("pt2-")}
    variants = [n.rsplit("-", 1)[1] for n in names[1:]]
    assert variants == sorted(variants, key=["base", "ci", "tslrec"].index)
    assert names[1] != "pt2-beauty-sasrec-42-base" and names[variants.count("base")] == "pt2-beauty-sasrec-42-base"


def test_the_paper_chain_job_computes_the_chain_the_paper_trainings_use():
    """The chain job goes through the CLI, the trainings through benchmarks.table2: one chain only if both
    resolve --profile paper to the same upstream config (else the GPU computes two)."""
    from pipeline.overrides import build_config
    from tslrec import stage_config

    jobs = dict(plan("gpu-final"))
    chain = jobs["chain-beauty-paper"]
    cli, _ = stage_config("beauty", [], None, chain[chain.index("--profile") + 1], None, "augment")
    training = jobs["pt2-beauty-sasrec-43-tslrec"]
    assert training[training.index("--profile") + 1] == "paper"
    exp = build_config(sets=["data.dataset=beauty", training[training.index("--set") + 1]], profile="paper")
    for stage in ("data", "pretrain", "group", "sft", "augment"):
        assert getattr(cli, stage) == getattr(exp, stage), stage
    assert cli.pretrain.backbone.dim == exp.train.backbone.dim == 256


def job_file(seed: int, ndcg: dict[str, float]) -> dict:
    """What one `benchmarks.table2 --backbones sasrec --seeds 1` job writes (the fields the merge reads)."""
    runs = [{"key": f"{v}-{seed}", "backbone": "sasrec", "variant": v, "seed": seed, "seconds_per_epoch": 1.0,
             "test": {m: x for m in METRICS}, "test_alt": {"mask_history": False, **{m: x / 2 for m in METRICS}}}
            for v, x in ndcg.items()]
    return {"dataset": "toy", "mask_history": True, "upstream": {}, "pipeline": {}, "runs": runs,
            "command": f"job {seed}", "git_commit": "c", "machine": {}, "versions": {}}


def test_merge_pools_the_jobs_seeds_and_skips_a_half_written_file(tmp_path):
    """Seeds 42 and 43 from one worker's grid, 44 from another's."""
    for seed, tslrec in ((42, 0.30), (43, 0.31), (44, 0.32)):
        table2 = tmp_path / ("grid2" if seed == 44 else "grid") / "table2"
        table2.mkdir(parents=True, exist_ok=True)
        job = job_file(seed, {"base": 0.20 + (seed - 42) / 100, "tslrec": tslrec})
        job["upstream"] = {"data": {}, "augment": {}} if seed == 43 else {"data": {}}   # a base-only job has no chain
        (table2 / f"experiment-toy-sasrec-{seed}.json").write_text(json.dumps(job))
    (table2 / "experiment-toy-sasrec-45.json").write_text('{"dataset": "toy", "ru')   # stopped mid-write
    merge([tmp_path / "grid", tmp_path / "grid2"], tmp_path, note="test")
    out = json.loads((tmp_path / "experiment-toy.json").read_text())
    rows = {r["variant"]: r for r in out["summary"]}
    assert rows["base"]["n_seeds"] == rows["tslrec"]["n_seeds"] == 3 and len(out["runs"]) == 6
    assert rows["tslrec"]["mean"]["ndcg10"] == pytest.approx(0.31)
    assert rows["tslrec"]["alt"]["ndcg10"] == pytest.approx(0.155)
    sig = next(s for s in out["significance"] if s["metric"] == "ndcg10")
    assert sig["vs"] == "base" and sig["diff"] == pytest.approx(0.10) and sig["p"] < 0.001
    assert [j["command"] for j in out["jobs"]] == ["job 42", "job 43", "job 44"]
    assert set(out["upstream"]) == {"data", "augment"}    # the chain's, whichever job carried it


def test_merge_keeps_the_record_of_the_job_that_computed_a_run():
    from benchmarks.grid_merge import computed_first

    first = {"key": "k", "cached": False, "seconds_per_epoch": 12.0}
    hit = {"key": "k", "cached": True, "seconds_per_epoch": 12.0}
    assert computed_first([first, hit])["k"] is first and computed_first([hit, first])["k"] is first
    assert computed_first([hit, {"key": "j", "cached": True}]).keys() == {"k", "j"}


def test_merge_refuses_two_runs_of_one_seed_from_two_machines(tmp_path):
    for grid, key in (("gpu", "a" * 64), ("cpu", "b" * 64)):   # another torch: the same job, another key
        table2 = tmp_path / grid / "table2"
        table2.mkdir(parents=True)
        job = job_file(42, {"base": 0.20})
        job["runs"][0]["key"] = key
        (table2 / "experiment-toy-sasrec-42.json").write_text(json.dumps(job))
    with pytest.raises(ValueError, match="sasrec base 42 has two runs"):
        merge([tmp_path / "gpu", tmp_path / "cpu"], tmp_path, note="test")


def test_merge_keeps_a_profiles_runs_apart_from_the_defaults(tmp_path):
    table2 = tmp_path / "grid" / "table2"
    table2.mkdir(parents=True)
    for seed in (42, 43):
        (table2 / f"experiment-toy-sasrec-{seed}.json").write_text(json.dumps(job_file(seed, {"base": 0.2, "tslrec": 0.3})))
        paper = job_file(seed, {"base": 0.1, "tslrec": 0.15}) | {"profile": "paper"}
        for r in paper["runs"]:
            r["key"] += "-paper"
        (table2 / f"experiment-toy-paper-sasrec-{seed}.json").write_text(json.dumps(paper))
    merge([tmp_path / "grid"], tmp_path, note="test")
    default, paper = (json.loads((tmp_path / f"experiment-toy{t}.json").read_text()) for t in ("", "-paper"))
    assert len(default["runs"]) == len(paper["runs"]) == 4
    assert default["profile"] is None and paper["profile"] == "paper" and paper["benchmark"] == "experiment-toy-paper"
    assert {r["variant"]: r["mean"]["ndcg10"] for r in paper["summary"]} == pytest.approx({"base": 0.1, "tslrec": 0.15})


def test_merge_with_a_prior_record_equals_the_merge_of_both_folders(tmp_path):
    """A fresh machine: the folders of earlier sessions are gone, their merged record is committed."""
    for grid, seeds in (("old", (42, 43)), ("new", (44,))):
        table2 = tmp_path / grid / "table2"
        table2.mkdir(parents=True)
        for seed in seeds:
            job = job_file(seed, {"base": 0.2 + seed / 1000, "tslrec": 0.3})
            job["upstream"] = {"data": {"key": "d"}, "augment": {"key": "a"}}
            (table2 / f"experiment-toy-sasrec-{seed}.json").write_text(json.dumps(job))
    (tmp_path / "both").mkdir()
    merge([tmp_path / "old", tmp_path / "new"], tmp_path / "both", note="n")
    (tmp_path / "prior").mkdir()
    merge([tmp_path / "old"], tmp_path / "prior", note="n")
    merge([tmp_path / "new"], tmp_path, note="n", priors=[tmp_path / "prior" / "experiment-toy.json"])
    both, pooled = (json.loads(p.read_text()) for p in (tmp_path / "both" / "experiment-toy.json", tmp_path / "experiment-toy.json"))
    commands = lambda rec: sorted(j["command"] for j in rec.pop("jobs"))   # the prior's jobs come first
    assert commands(pooled) == commands(both) == ["job 42", "job 43", "job 44"]
    assert pooled == both and len(pooled["runs"]) == 6


def test_merge_refuses_jobs_on_different_upstream_chains(tmp_path):
    table2 = tmp_path / "grid" / "table2"
    table2.mkdir(parents=True)
    for seed, pretrain in ((42, "p1"), (43, "p2")):   # e.g. another commit's stage code for seed 43's job
        job = job_file(seed, {"ci": 0.2})
        job["upstream"] = {"data": {"key": "d"}, "pretrain": {"key": pretrain}}
        (table2 / f"experiment-toy-sasrec-{seed}.json").write_text(json.dumps(job))
    with pytest.raises(ValueError, match="two pretrain keys"):
        merge([tmp_path / "grid"], tmp_path, note="n")


def test_merge_refuses_a_prior_that_is_not_an_experiment_record(tmp_path):
    (tmp_path / "grid" / "table2").mkdir(parents=True)
    (tmp_path / "fusion-toy.json").write_text(json.dumps({"benchmark": "fusion", "runs": []}))
    with pytest.raises(ValueError, match="not an experiment"):
        merge([tmp_path / "grid"], tmp_path, note="n", priors=[tmp_path / "fusion-toy.json"])


def grid_run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.grid", "run", "--plan", "tiny", "--out",
                           str(tmp_path), "--workers", "1", "--deadline-s", "0", "--hard-deadline-s", "1", *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_a_grid_past_its_deadline_starts_nothing_and_says_so(tmp_path):
    r = grid_run(tmp_path)
    assert r.returncode == 0, r.stderr
    state = json.loads((tmp_path / "grid.json").read_text())
    assert state["jobs"] == [] and state["running"] == [] and len(state["not_started"]) == len(plan("tiny"))


def test_only_keeps_the_matching_jobs_and_refuses_a_pattern_that_matches_none(tmp_path):
    assert grid_run(tmp_path, "--only", "t2-*-caser-*").returncode == 0
    state = json.loads((tmp_path / "grid.json").read_text())
    assert state["not_started"] == ["t2-synthetic-caser-42", "t2-synthetic-caser-43"]
    r = grid_run(tmp_path, "--only", "t2-*-gru4rec-*")
    assert r.returncode == 1 and r.stderr.strip() == "error: no job of plan 'tiny' matches t2-*-gru4rec-*"


def test_first_that_fits_skips_a_job_the_hard_deadline_would_stop_for_a_shorter_one_behind_it():
    from benchmarks.grid import first_that_fits, parse_expect

    todo = [("pt2-beauty-fmlprec-43-base", []), ("pt2-beauty-sasrec-44-base", []), ("other", [])]
    expect = parse_expect(["pt2-*-fmlprec-*=5400", "pt2-*-sasrec-*=4000"])
    assert first_that_fits(todo, 1000, 10300, expect) == 0          # both fit: priority order
    assert first_that_fits(todo, 5200, 10300, expect) == 1          # FMLP-Rec would end at 10,600 s
    assert first_that_fits(todo[:2], 7000, 10300, expect) is None   # neither fits
    assert first_that_fits(todo, 7000, 10300, expect) == 2          # no rule: expected 0 s, as without --expect


def test_a_grid_whose_jobs_cannot_end_in_time_starts_none_and_returns(tmp_path):
    """Without --expect the first job would start (deadline 50 s) and be stopped at the hard deadline."""
    r = grid_run(tmp_path, "--deadline-s", "50", "--expect", "t2-*=100", "--expect", "fu-*=100")
    assert r.returncode == 0, r.stderr
    state = json.loads((tmp_path / "grid.json").read_text())
    assert state["jobs"] == [] and len(state["not_started"]) == len(plan("tiny"))
    for rule in ("t2-*", "t2-*=abc", "=100"):
        bad = grid_run(tmp_path, "--expect", rule)
        assert bad.returncode == 1 and bad.stderr.strip().startswith(f"error: --expect {rule!r}: want PATTERN=SECONDS")
