"""Data parallelism: 2 CPU processes (gloo) under torchrun give the single process's results.

One pipeline (data -> pretrain 2 epochs -> group -> sft 'group' with a tiny Llama -> augment, then
sft 'next_item') runs in-process and under `torchrun --nproc-per-node 2`; losses, weights and
artifacts must agree within float tolerance (gradients are summed in another order), integer
artifacts exactly. Dropout is 0: masks are drawn per rank (see stages/core/distributed.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from benchmarks.common import set_flags
from stages.core.distributed import Dist

ROOT = Path(__file__).resolve().parents[2]
SETS = ["pretrain.trainer.epochs=2", "pretrain.trainer.batch_size=12", "pretrain.backbone.dim=16",
        "pretrain.backbone.dropout=0", "group.k=4", "group.n_init=1", "sft.model=tiny-llama", "sft.num_layers=1",
        "sft.lora_dropout=0", "sft.batch_size=7", "sft.max_items=8", "sft.epochs=2", "augment.batch_size=5",
        # fp32: a sharded batch sums in another order; bf16's rounding would hide a real mismatch in noise
        "pretrain.trainer.precision=fp32", "sft.precision=fp32"]
ARGS = set_flags(SETS)
NEXT_ITEM = ["--set", "sft.task=next_item"]


def torchrun(cache: Path, data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(ROOT / "tslrec.py"), "--cache-dir", str(cache), "--data-dir", str(data), "--threads", "1",
           "--no-progress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)


def in_process(*args: str) -> int:
    """Run `tslrec ARGS` through the real entry point in this process; -> exit code."""
    import tslrec

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["tslrec", *args])
        try:
            tslrec.main()
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else 1
    return 0


def records(cache: Path) -> dict[tuple[str, str], dict]:
    """Every run manifest in a cache, by (stage, its config as JSON)."""
    out = {}
    for path in (cache / "runs").glob("*/*.json"):
        rec = json.loads(path.read_text())
        out[(rec["stage"], json.dumps(rec["config"], sort_keys=True))] = rec
    return out


def tensors(rec: dict, kind: str) -> dict[str, torch.Tensor]:
    return load_file(rec["outputs"][kind]["path"])


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys(), what
    for name in a:
        if a[name].is_floating_point():
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=2e-5, msg=f"{what}: {name}")
        else:
            assert torch.equal(a[name], b[name]), f"{what}: {name}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(single-process manifests, 2-process manifests, the torchrun outputs) of the same pipeline."""
    tmp = tmp_path_factory.mktemp("dist")
    data = tmp / "data"
    single, multi = tmp / "single", tmp / "multi"
    base = ["--data-dir", str(data), "--threads", "1", "--no-progress"]
    assert in_process(*base, "data", "synth", "--name", "toy", "--users", "40", "--items", "24") == 0
    procs = [torchrun(multi, data, "run", "augment", "-d", "toy", *ARGS, "--json"),
             torchrun(multi, data, "run", "sft", "-d", "toy", *ARGS, *NEXT_ITEM, "--json")]
    for p in procs:
        assert p.returncode == 0, p.stderr[-3000:]
    for extra in ([], NEXT_ITEM):   # the single process in-process (torch & co already imported: faster)
        assert in_process("--cache-dir", str(single), *base, "run", "sft" if extra else "augment", "-d", "toy",
                          *ARGS, *extra, "--json") == 0
    return records(single), records(multi), procs


def test_two_processes_match_one(runs):
    single, multi, _ = runs
    assert single.keys() == multi.keys()
    assert sorted(stage for stage, _ in single) == ["augment", "data", "group", "pretrain", "sft", "sft"]
    for key, one in single.items():
        two, stage = multi[key], key[0]
        if stage == "data":   # computed by rank 0 alone: the same bytes
            assert {k: r["digest"] for k, r in one["outputs"].items()} == {k: r["digest"] for k, r in two["outputs"].items()}
        for kind in one["outputs"]:
            assert_close(tensors(one, kind), tensors(two, kind), f"{stage}.{kind}")
        if stage == "sft":
            assert two["result"]["train_loss"] == pytest.approx(one["result"]["train_loss"], rel=1e-5)
            assert two["result"]["valid_mse"] == pytest.approx(one["result"]["valid_mse"], rel=1e-4, abs=1e-7) \
                if one["result"]["valid_mse"] is not None else True
        if stage in ("pretrain", "sft") and one["result"].get("valid"):
            for m in ("hr10", "ndcg10"):
                assert two["result"]["valid"][m] == pytest.approx(one["result"]["valid"][m], abs=1e-9)
        if stage == "augment":
            assert (two["result"]["c1"], two["result"]["c3"]) == (one["result"]["c1"], one["result"]["c3"])


def test_only_rank_zero_prints_and_records_memory(runs):
    _, multi, procs = runs
    for p in procs:
        lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
        assert len(lines) == 1                           # one JSON record, from rank 0 alone
        assert json.loads(lines[0])["stage"] in ("augment", "sft")
    assert all(rec["peak_rss_mb"] and rec["peak_rss_mb"] > 50 for rec in multi.values())


def test_shard_all_reduce_and_gather_are_identities_in_one_process():
    d = Dist()
    idx = torch.arange(5)
    assert torch.equal(d.shard(idx), idx) and torch.equal(d.gather_rows(idx), idx)
    lin = torch.nn.Linear(2, 1)
    loss = lin(torch.ones(1, 2)).sum()
    loss.backward()
    before = lin.weight.grad.clone()
    assert float(d.all_reduce_grads(lin, loss)) == pytest.approx(loss.item())
    assert torch.equal(lin.weight.grad, before)


def test_shard_slices_cover_the_batch_in_order():
    idx = torch.arange(7)
    parts = [Dist(r, 3).shard(idx) for r in range(3)]
    assert torch.equal(torch.cat(parts), idx) and [p.numel() for p in parts] == [3, 2, 2]
    assert Dist(1, 2).shard(torch.arange(1)).numel() == 0   # a last batch smaller than the world
