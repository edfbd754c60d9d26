"""The `--device cuda` path: every stage on a GPU, artifacts back on the CPU, figures like the CPU's.

Skipped where torch sees no CUDA device (CI has none); run on a GPU machine with
`python -m pytest tests/unit/test_cuda.py`.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_experiment import TINY

from benchmarks.common import set_flags

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _synth(cli):
    assert cli("data", "synth", "--name", "toy", "--users", "60", "--items", "30").code == 0


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
def test_run_all_on_cuda_writes_cpu_artifacts(cli, dirs, model):
    _synth(cli)
    tiny = [a if a != "sft.model=tiny-bert" else f"sft.model={model}" for a in TINY]
    r = cli("--device", "cuda", "run", "all", "--dataset", "toy", *tiny, "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert {row["variant"] for row in summary["summary"]} == {"base", "ci", "tslrec"}
    objects = list((dirs[0] / "objects").rglob("*.safetensors"))
    assert objects, "no artifacts written"
    for path in objects:   # safetensors files load on a CPU-only machine: every tensor was moved back
        assert all(t.device.type == "cpu" for t in load_file(str(path)).values())


def test_e4srec_task_on_cuda(cli):
    _synth(cli)
    r = cli("--device", "cuda", "run", "sft", "--dataset", "toy", *TINY, "--set", "sft.task=next_item", "--json")
    assert r.code == 0, r.err
    result = json.loads(r.out)["result"]
    assert 0.0 <= result["test"]["ndcg10"] <= 1.0


def test_trainer_on_cuda_learns_like_on_cpu():
    """Same seed, same data: the GPU run's test HR@10 is within noise of the CPU run's (kernels
    differ in rounding, so the figures need not be equal), and both learn the cyclic pattern."""
    from schemas.backbone import BackboneConfig, TrainerConfig
    from schemas.runtime import Runtime
    from stages.backbones.embedding import ItemEmbedding
    from stages.core.trainer import train_backbone
    from tests.conftest import cycle_dataset

    seqs = cycle_dataset()
    hr = {}
    for device in ("cpu", "cuda"):
        fit = train_backbone(BackboneConfig(dim=32), TrainerConfig(epochs=30, patience=30, seed=3), seqs,
                             lambda: ItemEmbedding(seqs.n_items, 32), Runtime(device=device, progress=False),
                             variant="base")
        hr[device] = fit.result.test.hr10
        assert fit.ranks["test"].device.type == "cpu"
    assert hr["cuda"] > 0.9 and abs(hr["cuda"] - hr["cpu"]) < 0.1, hr


@pytest.mark.parametrize("extra", [["sft.precision=bf16"], ["sft.precision=fp16"],
                                   ["sft.precision=bf16", "sft.gradient_checkpointing=true"]])
def test_sft_and_augment_in_half_precision_on_cuda(cli, dirs, extra):
    """Half-precision weights under autocast (fp16 with loss scaling) and checkpointing, on the GPU."""
    _synth(cli)
    tiny = [a if a != "sft.model=tiny-bert" else "sft.model=tiny-llama" for a in TINY]
    sets = set_flags(extra)
    r = cli("--device", "cuda", "run", "augment", "--dataset", "toy", *tiny, *sets, "--json")
    assert r.code == 0, r.err
    rec = json.loads(r.out)
    assert rec["peak_cuda_mb"] is not None and rec["peak_cuda_mb"] > 0
    emb = load_file(rec["outputs"]["enhanced"]["path"])["embeddings"]
    assert emb.dtype == torch.float32 and torch.isfinite(emb).all()


def test_sft_in_4bit_on_cuda(cli, dirs, tmp_path):
    """NF4 weights (bitsandbytes) on a model from a local folder; skipped without the `quant` extra."""
    pytest.importorskip("bitsandbytes")
    from stages.lm.load import load_lm

    model, tok = load_lm("tiny-llama")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    _synth(cli)
    tiny = [a if a != "sft.model=tiny-bert" else f"sft.model={tmp_path / 'm'}" for a in TINY]
    r = cli("--device", "cuda", "run", "augment", "--dataset", "toy", *tiny, "--set", "sft.load_in_4bit=true",
            "--set", "sft.precision=bf16", "--json")
    assert r.code == 0, r.err


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpu_processes_match_one(tmp_path):
    """The gloo test's pipeline on 2 GPUs with nccl (tests/unit/test_distributed.py), pretrain only."""
    import subprocess
    import sys

    from tests.unit.test_distributed import ARGS, ROOT, records, torchrun

    data = tmp_path / "data"
    subprocess.run([sys.executable, str(ROOT / "tslrec.py"), "--data-dir", str(data), "data", "synth", "--name", "toy",
                    "--users", "40", "--items", "24"], check=True, capture_output=True)
    p = torchrun(tmp_path / "multi", data, "--device", "cuda", "run", "pretrain", "-d", "toy", *ARGS, "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert [r["stage"] for r in records(tmp_path / "multi").values()].count("pretrain") == 1
