"""Shared-prefix KV reuse (stages/lm/model.py): same h^u and LoRA gradients as the plain path."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from torch import nn

from schemas.runtime import Runtime
from schemas.sft import SftConfig
from stages import sft
from stages.lm.load import load_lm
from stages.lm.model import build_prompt_lm, cache_names

H, D, N = 64, 8, 20




def lora_model(name: str, dropout: float = 0.0):
    """tiny model + LoRA (lora_B random, so LoRA changes outputs and lora_A gets gradients) + heads."""
    from peft import LoraConfig, get_peft_model

    lm, tok = load_lm(name)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"] if name == "tiny-llama" else ["query", "key", "value"]
    torch.manual_seed(0)
    peft_lm = get_peft_model(lm, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=targets))
    with torch.no_grad():
        for n, p in peft_lm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    weight = torch.randn(N + 1, D)
    return build_prompt_lm(peft_lm, tok, weight, 4, nn.Linear(H, 4), "group_head").train()


# right padding of every width, an empty item list, and a full row
IDS = torch.tensor([[3, 4, 5, 6, 7], [8, 0, 0, 0, 0], [1, 2, 9, 0, 0], [0, 0, 0, 0, 0], [11, 12, 13, 14, 0]])
COUNTS = torch.tensor([5, 1, 3, 0, 4])


def forward_backward(model, share: bool):
    model.share_prefix = share
    model.zero_grad(set_to_none=True)
    h, batch = model.hidden(IDS, COUNTS)
    w = torch.linspace(-1, 1, H)
    (torch.tanh(h) * w).sum().backward()     # a loss that weighs every row and feature differently
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return h.detach(), grads, batch


def test_shared_prefix_equals_plain_path_outputs_and_lora_grads():
    model = lora_model("tiny-llama")
    assert model.causal and model.template.prefix_len > 1
    h0, g0, batch = forward_backward(model, share=False)
    h1, g1, _ = forward_backward(model, share=True)
    assert model.shares_prefix
    assert int(batch.attention_mask.sum()) < batch.attention_mask.numel()      # there was right padding
    assert torch.allclose(h0, h1, atol=1e-5, rtol=1e-5)
    assert sorted(g0) == sorted(g1)
    lora = [n for n in g0 if "lora_" in n]
    assert len(lora) == 2 * 4 * 2 and any("k_proj.lora_A" in n for n in lora)   # 2 layers x q,k,v,o x A,B
    assert "linear_proj.weight" in g0
    for n in g0:
        assert g0[n].abs().max() > 0, n
        # float32 sums in another order: compare against the tensor's own scale
        assert (g0[n] - g1[n]).abs().max() <= 1e-5 * g0[n].abs().max(), n
    with torch.no_grad():                                                       # eval / inference path too
        model.eval()
        model.share_prefix = False
        e0, _ = model.hidden(IDS, COUNTS)
        model.share_prefix = True
        e1, _ = model.hidden(IDS, COUNTS)
    assert torch.allclose(e0, e1, atol=1e-5) and torch.allclose(e0, h0, atol=1e-5)


def forward_shapes(model) -> list[tuple[int, ...]]:
    """inputs_embeds shape of every call of the base model during one `hidden`."""
    shapes: list[tuple[int, ...]] = []
    base = model.lm.get_base_model()
    hook = base.register_forward_pre_hook(lambda m, a, kw: shapes.append(tuple(kw["inputs_embeds"].shape)), with_kwargs=True)
    try:
        with torch.no_grad():
            _, batch = model.hidden(IDS, COUNTS)
    finally:
        hook.remove()
    return shapes, batch


def test_prefix_runs_once_at_batch_size_one():
    model = lora_model("tiny-llama").eval()
    shapes, batch = forward_shapes(model)
    b, t, _ = batch.inputs_embeds.shape
    p = batch.prefix_len
    assert shapes == [(1, p, H), (b, t - p, H)]
    kw, out = cache_names(model.lm)
    assert kw == out and kw in ("cache", "past_key_values")


def test_encoder_falls_back_to_the_plain_path():
    model = lora_model("tiny-bert").eval()
    model.share_prefix = True
    assert not model.causal and not model.shares_prefix
    shapes, batch = forward_shapes(model)
    assert shapes == [tuple(batch.inputs_embeds.shape)]                          # one full pass
    with torch.no_grad():
        h1, _ = model.hidden(IDS, COUNTS)
        model.share_prefix = False
        h0, _ = model.hidden(IDS, COUNTS)
    assert torch.equal(h0, h1)


def test_sft_training_is_the_same_with_and_without_prefix_reuse(tmp_path):
    """A whole (dropout-free) SFT run: same losses and the same trained LoRA/head weights."""
    from stages.core.sequences import Sequences

    g = torch.Generator().manual_seed(0)
    m, k = 16, 4
    lengths = torch.randint(3, 10, (m,), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(lengths, 0)])
    seqs = Sequences(torch.randint(1, N + 1, (int(offsets[-1]),), generator=g, dtype=torch.int32), offsets, N)
    pref = torch.softmax(torch.randn(m, k, generator=g), 1)
    weight = torch.randn(N + 1, D, generator=g)
    rt = Runtime(progress=False, cache_dir=tmp_path / "cache", offline=True)
    runs = []
    for share in (False, True):
        c = SftConfig(model="tiny-llama", epochs=2, batch_size=5, max_items=6, valid_fraction=0.25, lr=5e-3,
                      lora_dropout=0.0, share_prefix=share, target="all",   # pref is arbitrary, not a histogram
                      precision="fp32")   # the two paths are equal up to fp32 rounding; bf16 rounds them apart
        model, res, _ = sft.train(c, seqs, weight, {"user_pref": pref}, rt)
        runs.append(({n: p.detach() for n, p in model.named_parameters() if p.requires_grad}, res))
    (w0, r0), (w1, r1) = runs
    assert not r0.shared_prefix and r1.shared_prefix
    assert r0.train_loss == pytest.approx(r1.train_loss, rel=1e-4)
    assert r0.valid_mse == pytest.approx(r1.valid_mse, rel=1e-4)
    for n in w0:
        assert torch.allclose(w0[n], w1[n], atol=1e-5, rtol=1e-4), n
