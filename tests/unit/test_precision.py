"""Real-size LM options on the CPU with tiny models: bf16/fp16 weights + autocast, gradient
checkpointing, LoRA on a model from a local folder, and the one-line refusals of 4-bit loading.
(The CUDA-only paths, 4-bit and fp16 loss scaling, are in tests/unit/test_cuda.py.)"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from schemas.augment import AugmentConfig, AugmentIn

from schemas.sft import SftIn
from stages import augment, sft
from stages.lm import precision
from stages.lm.load import load_lm
from stages.lm.model import load_adapted_lm
from test_sft import cfg, rt, synthetic


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_bf16_weights_give_float32_states_close_to_fp32(name):
    full, _ = load_lm(name)
    half, _ = load_lm(name, precision="bf16")
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    x = torch.randn(3, 5, full.config.hidden_size, generator=torch.Generator().manual_seed(0))   # (B, T, H)
    with torch.no_grad():
        want = full(inputs_embeds=x).last_hidden_state
        got = half(inputs_embeds=x).last_hidden_state
    assert got.dtype == torch.float32                      # the float32 heads take it as is
    assert (got - want).abs().max() < 0.1 * want.abs().max()


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_sft_in_bf16_trains_fp32_adapters_and_augment_loads_bf16(name, tmp_path):
    seqs, weight, groups = synthetic()
    c = cfg(name, precision="bf16", epochs=1)
    model, res, _ = sft.train(c, seqs, weight, groups, rt(tmp_path))
    lora = [p for n, p in model.lm.named_parameters() if "lora_" in n]
    base = [p for n, p in model.lm.named_parameters() if "lora_" not in n]
    assert lora and all(p.dtype == torch.float32 for p in lora)
    assert all(p.dtype == torch.bfloat16 for p in base)
    assert torch.isfinite(torch.tensor(res.train_loss)) and res.valid_mse is not None
    arts = sft.artifacts(model, c)
    lm, _, _ = load_adapted_lm(arts["adapter"], cache_dir=tmp_path / "cache")
    assert next(lm.parameters()).dtype == torch.bfloat16      # augment runs as sft trained
    out = augment.run(AugmentConfig(batch_size=7), AugmentIn(sequences=seqs.to_tensors(), item_embeddings={"weight": weight},
                                                             groups=groups, **arts), rt(tmp_path))
    emb = out.artifacts["enhanced"]["embeddings"]
    assert emb.dtype == torch.float32 and torch.isfinite(emb).all()


def checkpointing(model) -> bool:
    base = model.lm.get_base_model()
    return getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing


def test_gradient_checkpointing_same_training_less_state(tmp_path):
    seqs, weight, groups = synthetic()
    plain_model, plain, _ = sft.train(cfg("tiny-llama", epochs=1, share_prefix=False), seqs, weight, groups, rt(tmp_path))
    ckpt_model, ckpt, _ = sft.train(cfg("tiny-llama", epochs=1, gradient_checkpointing=True), seqs, weight, groups,
                                    rt(tmp_path))
    assert checkpointing(ckpt_model) and not ckpt.shared_prefix
    assert not checkpointing(plain_model)
    assert ckpt.train_loss == pytest.approx(plain.train_loss, rel=1e-5)
    assert ckpt.valid_mse == pytest.approx(plain.valid_mse, rel=1e-4)


def test_lora_on_a_local_folder_model_in_bf16(tmp_path):
    model, tok = load_lm("tiny-llama")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    seqs, weight, groups = synthetic()
    _, res, _ = sft.train(cfg(str(tmp_path / "m"), precision="bf16", epochs=1), seqs, weight, groups, rt(tmp_path))
    assert res.model == str(tmp_path / "m") and res.hidden_size == 64 and res.trainable_params > 0


def test_4bit_is_refused_in_one_line_without_cuda_or_package(cli, dirs):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        precision.check_4bit("cpu")
    with pytest.MonkeyPatch.context() as mp:   # its own patcher: the `dirs` fixture's env vars stay
        mp.setattr(torch.cuda, "is_available", lambda: True)
        mp.setattr(precision.importlib.util, "find_spec", lambda name: None)
        with pytest.raises(ValueError, match=r"pip install 'tslrec\[quant\]'"):
            precision.check_4bit("cuda")
    assert cli("data", "synth", "--name", "toy", "--users", "20", "--items", "12").code == 0
    r = cli("run", "sft", "-d", "toy", "--set", "sft.load_in_4bit=true", "--set", "pretrain.trainer.epochs=1",
            "--set", "sft.model=tiny-llama", "--set", "group.k=2", "--set", "pretrain.backbone.dim=8")
    assert r.code == 1 and r.out == ""
    assert (dirs[0] / "runs").is_dir()                      # the upstream runs went to the test's cache
    assert r.err.strip().splitlines()[-1].startswith("error: sft.load_in_4bit needs a CUDA device")


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision 'fp8'"):
        load_lm("tiny-llama", precision="fp8")
