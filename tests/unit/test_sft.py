"""sft (information reconstruction) and augment (information augmentation) end to end on tiny models."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from schemas.augment import AugmentConfig, AugmentIn
from schemas.group import GroupConfig, GroupIn
from schemas.runtime import Runtime, default_cache_dir
from schemas.sft import SftConfig, SftIn
from stages import augment, group, sft
from stages.core.preference import preference_histogram
from stages.core.sequences import Sequences
from stages.lm.load import load_lm
from stages.lm.model import CONFIG_KEY, adapter_meta, build_prompt_lm, load_heads, save_peft_dir
from stages.lm.tasks import GROUP



M, N, D, K = 24, 30, 8, 4


def synthetic(seed: int = 0, sentinel: bool = False):
    """(Sequences, item weight [N+1, D], groups). With sentinel, item N sits only in the validation
    and test positions of every user and its embedding row is NaN: if it ever reached the LLM,
    the loss and the predictions would be NaN."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 11, (M,), generator=g)
    offsets = torch.zeros(M + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    items = torch.randint(1, N, (int(offsets[-1]),), generator=g, dtype=torch.int32)   # 1..N-1
    weight = torch.randn(N + 1, D, generator=g)
    weight[0] = 0
    if sentinel:
        items[offsets[1:] - 1] = N
        items[offsets[1:] - 2] = N
        weight[N] = float("nan")
    seqs = Sequences(items, offsets, N)
    cmap = torch.cat([torch.tensor([-1]), torch.randint(0, K, (N,), generator=g)])
    groups = {"cluster_map": cmap, "user_pref": preference_histogram(seqs.train_part(), cmap, K),
              "centroids": torch.zeros(K, D)}
    return seqs, weight, groups


def rt(tmp_path) -> Runtime:
    return Runtime(progress=False, cache_dir=tmp_path / "cache", offline=True)


def cfg(model: str, **kw) -> SftConfig:
    # fp32: these tests compare against exact recomputations (bf16, the default, has tests/unit/test_precision.py)
    base = dict(model=model, epochs=2, batch_size=8, max_items=6, valid_fraction=0.2, lr=5e-3, lora_dropout=0.0,
                precision="fp32")
    return SftConfig(**{**base, **kw})


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
def test_sft_then_augment_end_to_end(model, tmp_path):
    seqs, weight, groups = synthetic()
    c = cfg(model)
    out = sft.run(c, SftIn(sequences=seqs.to_tensors(), item_embeddings={"weight": weight}, groups=groups), rt(tmp_path))
    res = out.result
    assert res.hidden_size == 64 and res.instances_per_epoch == M - round(0.2 * M)
    assert res.valid_mse is not None and res.valid_mse_mean_baseline is not None
    assert 0 <= res.valid_mse <= 2 and 0 <= res.train_loss <= 2
    assert res.seconds_per_epoch > 0 and res.tokens_per_second > 0
    adapter, heads = out.artifacts["adapter"], out.artifacts["heads"]
    assert adapter_meta(adapter)["sft"]["model"] == model
    assert all(k.startswith("base_model.model.") and ".lora_" in k for k in adapter if k != CONFIG_KEY)
    assert sorted(heads) == ["group_head.bias", "group_head.weight", "linear_proj.bias", "linear_proj.weight"]
    assert res.trainable_params == sum(v.numel() for k, v in {**adapter, **heads}.items() if k != CONFIG_KEY)
    assert all(t.is_contiguous() for t in [*adapter.values(), *heads.values()])

    aug = augment.run(AugmentConfig(batch_size=7), AugmentIn(
        sequences=seqs.to_tensors(), item_embeddings={"weight": weight}, groups=groups,
        adapter=adapter, heads=heads), rt(tmp_path))
    emb, probs = aug.artifacts["enhanced"]["embeddings"], aug.artifacts["enhanced"]["category_probs"]
    assert emb.shape == (N + 1, 64) and probs.shape == (N + 1, K)
    assert bool((emb[0] == 0).all()) and bool((probs[0] == 0).all())
    assert torch.allclose(probs[1:].sum(1), torch.ones(N), atol=1e-5)
    r = aug.result
    assert r.hidden_size == 64 and r.c1 + r.c2 + r.c3 == pytest.approx(1.0)
    top1 = probs[1:].argmax(1)
    assert r.c1 == pytest.approx(float((top1 == groups["cluster_map"][1:]).double().mean()))

    # The adapter as a peft directory: PeftModel.from_pretrained reads it, and the unmerged model
    # gives the same one-item embeddings as augment's merged one.
    from peft import PeftModel

    base, tok = load_lm(model)
    peft_lm = PeftModel.from_pretrained(base, save_peft_dir(adapter, tmp_path / "peft")).eval()
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "peft").iterdir()}
    proj, head, name = load_heads(heads)
    pm = build_prompt_lm(peft_lm, tok, weight, K, head, name, linear_proj=proj).eval()
    with torch.no_grad():
        h, _ = pm.hidden(torch.arange(1, N + 1).unsqueeze(1), torch.ones(N, dtype=torch.long))
        p = torch.softmax(pm.head(h), -1)
    assert torch.allclose(h, emb[1:], atol=1e-4) and torch.allclose(p, probs[1:], atol=1e-5)
    # ... and differs from the base model without LoRA (training moved lora_B away from zero).
    plain = build_prompt_lm(load_lm(model)[0], tok, weight, K, head, name, linear_proj=proj).eval()
    with torch.no_grad():
        h0, _ = plain.hidden(torch.arange(1, N + 1).unsqueeze(1), torch.ones(N, dtype=torch.long))
    assert not torch.allclose(h0, h, atol=1e-4)


def test_in_memory_model_equals_reloaded_adapter(tmp_path):
    from peft import PeftModel

    seqs, weight, groups = synthetic()
    c = cfg("tiny-llama", epochs=1)
    model, _, _ = sft.train(c, seqs, weight, groups, rt(tmp_path))
    arts = sft.artifacts(model, c)
    base, tok = load_lm("tiny-llama")
    peft_lm = PeftModel.from_pretrained(base, save_peft_dir(arts["adapter"], tmp_path / "peft")).eval()
    proj, head, name = load_heads(arts["heads"])
    again = build_prompt_lm(peft_lm, tok, weight, K, head, name, linear_proj=proj).eval()
    ids = torch.tensor([[3, 4, 5], [7, 0, 0]])
    counts = torch.tensor([3, 1])
    with torch.no_grad():
        assert torch.allclose(model.hidden(ids, counts)[0], again.hidden(ids, counts)[0], atol=1e-6)


def test_validation_and_test_items_never_reach_sft(tmp_path, monkeypatch):
    seqs, weight, groups = synthetic(sentinel=True)
    seen: list[torch.Tensor] = []
    real = sft.recent_items

    def spy(*a, **k):
        ids, counts = real(*a, **k)
        seen.append(ids)
        return ids, counts

    monkeypatch.setattr(sft, "recent_items", spy)
    model, res, _ = sft.train(cfg("tiny-bert", epochs=1), seqs, weight, groups, rt(tmp_path))
    assert seen and not any(bool((ids == N).any()) for ids in seen)
    assert torch.isfinite(torch.tensor(res.train_loss)) and torch.isfinite(torch.tensor(res.valid_mse))
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama"])
def test_padding_and_bucketing_do_not_change_h(model, tmp_path):
    seqs, weight, groups = synthetic()
    c = cfg(model, max_items=5)
    pm = sft.make_model(c, GROUP, weight, K, rt(tmp_path)).eval()
    # Make LoRA matter (lora_B starts at zero) so the check covers the adapted model too.
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    inst = GROUP.instances(seqs.train_part(), groups, c.resolved())
    items = seqs.train_part().items
    h_batch, _ = sft.predict(pm, GROUP, items, inst, c.max_items, batch_size=5)   # bucketed, padded
    with torch.no_grad():
        for i in range(len(inst)):
            ids, counts = sft.batch_inputs(items, inst, torch.tensor([i]), c.max_items)
            h_one, batch = pm.hidden(ids, counts)
            assert int(batch.attention_mask.sum()) == batch.attention_mask.numel()   # no padding alone
            assert torch.allclose(h_one[0], h_batch[i], atol=1e-5), i
    lengths = (inst.ends - inst.starts).clamp(max=c.max_items)
    assert len(set(lengths.tolist())) > 2     # the batches really mixed lengths


def test_sft_is_deterministic_and_rejects_next_item(tmp_path):
    seqs, weight, groups = synthetic()
    inp = SftIn(sequences=seqs.to_tensors(), item_embeddings={"weight": weight}, groups=groups)
    c = cfg("tiny-llama", epochs=1, lora_dropout=0.1)
    a = sft.run(c, inp, rt(tmp_path)).artifacts
    b = sft.run(c, inp, rt(tmp_path)).artifacts
    for kind in a:
        assert all(torch.equal(a[kind][n], b[kind][n]) for n in a[kind])


def test_no_validation_users(tmp_path):
    seqs, weight, groups = synthetic()
    _, res, _ = sft.train(cfg("tiny-bert", epochs=1, valid_fraction=0.0), seqs, weight, groups, rt(tmp_path))
    assert res.valid_mse is None and res.valid_mse_mean_baseline is None and res.instances_per_epoch == M


def test_real_minilm_few_users(tmp_path):
    seqs, weight, groups = synthetic()
    c = SftConfig(model="minilm-l6", epochs=1, batch_size=6, max_items=4, valid_fraction=0.25)
    out = sft.run(c, SftIn(sequences=seqs.to_tensors(), item_embeddings={"weight": weight}, groups=groups), rt(tmp_path))
    assert out.result.hidden_size == 384 and out.result.valid_mse is not None
    assert adapter_meta(out.artifacts["adapter"])["peft"]["target_modules"] is not None
    aug = augment.run(AugmentConfig(batch_size=32), AugmentIn(
        sequences=seqs.to_tensors(), item_embeddings={"weight": weight}, groups=groups,
        adapter=out.artifacts["adapter"], heads=out.artifacts["heads"]), rt(tmp_path))
    assert aug.artifacts["enhanced"]["embeddings"].shape == (N + 1, 384)


@pytest.mark.slow
def test_group_sft_augment_on_smollm2():
    """The packaged decoder, cut to 2 layers. The first run converts the GGUF into the user cache
    (~2 min, kept for later runs)."""
    seqs, weight, _ = synthetic()
    r = Runtime(progress=False, cache_dir=default_cache_dir(), offline=True)
    g = group.run(GroupConfig(k=K, n_init=1), GroupIn(sequences=seqs.to_tensors(), item_embeddings={"weight": weight}), r)
    groups = g.artifacts["groups"]
    c = SftConfig(model="smollm2-135m", num_layers=2, epochs=1, batch_size=8, max_items=4, valid_fraction=0.2)
    out = sft.run(c, SftIn(sequences=seqs.to_tensors(), item_embeddings={"weight": weight}, groups=groups), r)
    assert out.result.hidden_size == 576 and out.result.valid_mse is not None
    assert any(".q_proj.lora_A" in k for k in out.artifacts["adapter"])
    aug = augment.run(AugmentConfig(batch_size=16), AugmentIn(
        sequences=seqs.to_tensors(), item_embeddings={"weight": weight}, groups=groups,
        adapter=out.artifacts["adapter"], heads=out.artifacts["heads"]), r)
    emb = aug.artifacts["enhanced"]["embeddings"]
    assert emb.shape == (N + 1, 576) and torch.isfinite(emb).all()
    assert aug.result.c1 + aug.result.c2 + aug.result.c3 == pytest.approx(1.0)
