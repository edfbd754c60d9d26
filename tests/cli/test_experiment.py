"""`tslrec run all` end to end on synthetic data with tiny models, then `tslrec report`."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

TINY = ["--set", "pretrain.trainer.epochs=2", "--set", "train.trainer.epochs=2", "--set", "sft.model=tiny-bert",
        "--set", "group.k=4", "--set", "pretrain.backbone.dim=16", "--set", "train.backbone.dim=16"]


@pytest.fixture
def synthetic_run(cli, dirs):
    assert cli("data", "synth", "--name", "toy", "--users", "60", "--items", "30").code == 0
    r = cli("--threads", "1", "run", "all", "--dataset", "toy", "--seeds", "2", *TINY, "--json")
    assert r.code == 0, r.err
    return json.loads(r.out), r


def test_run_all_table_variants_seeds_and_second_run_is_cached(cli, synthetic_run):
    summary, first = synthetic_run
    assert {(row["variant"], row["n_seeds"]) for row in summary["summary"]} == {("base", 2), ("ci", 2), ("tslrec", 2)}
    assert {s["metric"] for s in summary["significance"]} == {"hr5", "hr10", "ndcg5", "ndcg10"}
    assert all(s["p"] is not None for s in summary["significance"])
    each = {(s["vs"], s["metric"]): s for s in summary["significance_vs_each"]}
    assert sorted(each) == sorted((v, m) for v in ("base", "ci") for m in ("hr5", "hr10", "ndcg5", "ndcg10"))
    rows = {r["variant"]: r for r in summary["summary"]}
    assert each[("ci", "ndcg10")]["diff"] == rows["tslrec"]["mean"]["ndcg10"] - rows["ci"]["mean"]["ndcg10"]
    assert all(row["alt"]["mask_history"] is False for row in summary["summary"])   # the paper's protocol too
    assert "tslrec" in first.err and "NDCG@10" in first.err          # the table went to stderr
    pipe = summary["pipeline"]
    ran = {pipe["pretrain"]["trainer"]["precision"], pipe["train"]["trainer"]["precision"], pipe["sft"]["precision"]}
    assert len(ran) == 1 and ran <= {"fp32", "bf16"}                 # 'auto' as it ran, as in the runs' metrics
    assert {r["test"]["precision"] for r in summary["runs"]} == ran
    t0 = time.perf_counter()
    again = cli("--threads", "1", "run", "all", "--dataset", "toy", "--seeds", "2", *TINY, "--json")
    assert again.code == 0
    assert time.perf_counter() - t0 < 10
    assert "computing" not in again.err
    assert all(r["cached"] for r in json.loads(again.out)["runs"])


def test_base_run_of_pretrains_seed_is_the_pretrain_run(synthetic_run):
    summary, _ = synthetic_run
    assert summary["seed_mode"] == "downstream" and "upstream_by_seed" not in summary
    pretrain_key = summary["upstream"]["pretrain"]["key"]
    base = {r["seed"]: r for r in summary["runs"] if r["variant"] == "base"}
    assert base[42]["stage"] == "pretrain" and base[42]["key"] == pretrain_key
    assert base[43]["stage"] == "train" and base[43]["key"] != pretrain_key


def test_reseed_chain_reruns_every_stage_per_seed(cli, dirs):
    """--reseed-chain: seed s has its own pretrain, k-means, sft and augment, and seed s's train
    runs read exactly those (tiny synthetic data, tiny BERT)."""
    from pipeline.cache import Cache

    assert cli("data", "synth", "--name", "toy", "--users", "40", "--items", "24").code == 0
    r = cli("--threads", "1", "run", "all", "--dataset", "toy", "--seeds", "2", "--reseed-chain", *TINY,
            "--set", "train.trainer.epochs=1", "--set", "pretrain.trainer.epochs=1", "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["seed_mode"] == "chain" and "every stage re-seeded" in r.err
    chains = summary["upstream_by_seed"]
    assert sorted(chains) == ["42", "43"]
    for stage in ("pretrain", "group", "sft", "augment"):
        assert chains["42"][stage]["key"] != chains["43"][stage]["key"], stage
    assert chains["42"]["data"]["key"] == chains["43"]["data"]["key"]
    assert summary["upstream"] == chains["42"]
    cache = Cache(dirs[0])
    for run in summary["runs"]:
        rec = cache.get_run(run["key"])
        seed = run["seed"]
        assert (rec.pipeline["pretrain"]["trainer"]["seed"], rec.pipeline["group"]["seed"], rec.pipeline["sft"]["seed"]) == (seed,) * 3
        if run["variant"] == "base":                  # every seed's base run is that seed's pretrain run
            assert run["stage"] == "pretrain" and run["key"] == chains[str(seed)]["pretrain"]["key"]
        if run["variant"] == "tslrec":                # ... and its tslrec run reads that seed's enhanced embeddings
            enhanced = cache.get_run(chains[str(seed)]["augment"]["key"]).outputs["enhanced"].digest
            assert rec.inputs["enhanced"] == enhanced
    assert all(s["p"] is not None for s in summary["significance"])


def test_pretrain_and_train_base_train_the_same_model():
    """What makes reusing the pretrain run as base seed 42 sound: same config, same result."""
    import torch

    from pipeline.synthetic import SyntheticConfig, make_synthetic
    from schemas.backbone import BackboneConfig, TrainerConfig
    from schemas.pretrain import PretrainConfig, PretrainIn
    from schemas.runtime import Runtime
    from schemas.train import TrainConfig, TrainIn
    from stages import pretrain, train

    seqs = make_synthetic(SyntheticConfig(users=40, items=20))
    tensors = {"items": torch.tensor([i for s in seqs for i in s], dtype=torch.int32),
               "offsets": torch.tensor([0] + [len(s) for s in seqs]).cumsum(0), "n_items": torch.tensor(20)}
    backbone, trainer = BackboneConfig(dim=16), TrainerConfig(epochs=3, seed=7)
    rt = Runtime(progress=False)
    a = pretrain.run(PretrainConfig(backbone=backbone, trainer=trainer), PretrainIn(sequences=tensors), rt)
    b = train.run(TrainConfig(variant="base", backbone=backbone, trainer=trainer), TrainIn(sequences=tensors), rt)
    assert a.result.valid == b.result.valid and a.result.test == b.result.test
    for name, t in b.artifacts["backbone"].items():
        assert torch.equal(t, a.artifacts["backbone"][name]), name


def test_report_renders_tables_and_pngs(cli, synthetic_run, tmp_path):
    r = cli("report", "--out", str(tmp_path / "rep"), "--json")
    assert r.code == 0, r.err
    files = json.loads(r.out)["files"]
    assert {"table2_md", "table2_csv", "table1_md", "table2_paper_md", "fig4", "fig5_toy_sasrec"} <= set(files)
    md = Path(files["table2_md"]).read_text()
    assert "| sasrec | tslrec |" in md and "toy NDCG@10" in md and "**" in md and " ± " in md
    for key in ("fig4", "fig5_toy_sasrec"):
        assert Path(files[key]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_variants_refuse_without_their_inputs():
    import torch

    from pipeline.synthetic import SyntheticConfig, make_synthetic
    from schemas.runtime import Runtime
    from schemas.train import TrainConfig, TrainIn
    from stages import train

    seqs = make_synthetic(SyntheticConfig(users=10, items=12))
    items = torch.tensor([i for s in seqs for i in s], dtype=torch.int32)
    offsets = torch.tensor([0] + [len(s) for s in seqs]).cumsum(0)
    inp = TrainIn(sequences={"items": items, "offsets": offsets, "n_items": torch.tensor(12)})
    for variant, needs in (("ci", "group"), ("tslrec", "augment")):
        with pytest.raises(ValueError, match=needs):
            train.run(TrainConfig(variant=variant), inp, Runtime(progress=False))


def test_report_without_experiments_is_a_clear_error(cli, tmp_path):
    r = cli("report", "--out", str(tmp_path / "x"))
    assert r.code == 1 and "run all" in r.err


def test_report_puts_e4srec_next_to_the_backbones(cli, synthetic_run, tmp_path):
    r = cli("--threads", "1", "run", "sft", "--dataset", "toy", *TINY, "--set", "sft.task=next_item", "--json")
    assert r.code == 0, r.err
    test = json.loads(r.out)["result"]["test"]
    rep = cli("report", "--out", str(tmp_path / "rep"), "--json")
    assert rep.code == 0, rep.err
    md = Path(json.loads(rep.out)["files"]["table2_md"]).read_text()
    row = next(line for line in md.splitlines() if line.startswith("| e4srec | tiny-bert |"))
    assert f"{test['ndcg10']:.4f}" in row                             # the cached run's own figure
