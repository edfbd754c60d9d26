"""The E4SRec baseline: sft with task="next_item" (instance-level SFT, item head, full ranking)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from torch.nn import functional as F

from schemas.runtime import Runtime
from schemas.sft import SftConfig, SftIn
from stages import sft
from stages.core.evaluate import metrics
from stages.core.sequences import Sequences
from stages.lm import e4srec
from stages.lm.prompt import NEXT_ITEM_INSTRUCTION, prompt_tokens
from stages.lm.tasks import NEXT_ITEM, get_task, mask_padding

M, N, D = 20, 25, 8




def synthetic(seed: int = 0, sentinel: bool = False) -> tuple[Sequences, torch.Tensor]:
    """Random sequences of 3..10 items over 1..N-1. With sentinel, item N is every user's
    validation and test item (and nowhere else)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 11, (M,), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(lengths, 0)])
    items = torch.randint(1, N, (int(offsets[-1]),), generator=g, dtype=torch.int32)
    if sentinel:
        items[offsets[1:] - 1] = N
        items[offsets[1:] - 2] = N
    weight = torch.randn(N + 1, D, generator=g)
    weight[0] = 0
    return Sequences(items, offsets, N), weight


def rt(tmp_path) -> Runtime:
    return Runtime(progress=False, cache_dir=tmp_path / "cache", offline=True)


def cfg(model: str = "tiny-llama", **kw) -> SftConfig:
    base = dict(model=model, task="next_item", epochs=1, batch_size=16, max_items=6, lr=5e-3, lora_dropout=0.0)
    return SftConfig(**{**base, **kw})


def test_instances_are_exactly_the_training_prefixes():
    old = SftConfig(task="next_item", empty_prefix=False).resolved()     # n-1 prefixes per user
    # user 0: 1 2 3 | 4 | 5   user 1: 6 | 7 | 8 (one training item: no instance)   user 2: 9 10 | 11 | 12
    seqs = Sequences(torch.tensor([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], dtype=torch.int32),
                     torch.tensor([0, 5, 8, 12]), 12)
    train = seqs.train_part()
    inst = NEXT_ITEM.instances(train, {}, old)
    got = [(int(u), train.items[s:e].tolist(), int(t)) for u, s, e, t in zip(inst.users, inst.starts, inst.ends, inst.targets)]
    assert got == [(0, [1], 2), (0, [1, 2], 3), (2, [9], 10)]
    inst = NEXT_ITEM.instances(train, {}, SftConfig(task="next_item").resolved())   # E4SRec: the empty prefix too
    got = [(int(u), train.items[s:e].tolist(), int(t)) for u, s, e, t in zip(inst.users, inst.starts, inst.ends, inst.targets)]
    assert got == [(0, [], 1), (0, [1], 2), (0, [1, 2], 3), (1, [], 6), (2, [], 9), (2, [9], 10)]
    # Random data against a brute-force reference; the sentinel (valid/test) item is never a target or an input.
    seqs, _ = synthetic(sentinel=True)
    train = seqs.train_part()
    inst = NEXT_ITEM.instances(train, {}, old)
    want = [(u, t[:j], t[j]) for u in range(M) for t in [train.user(u).tolist()] for j in range(1, len(t))]
    got = [(int(u), train.items[s:e].tolist(), int(t)) for u, s, e, t in zip(inst.users, inst.starts, inst.ends, inst.targets)]
    assert got == want and len(inst) == int((seqs.lengths - 3).sum())
    assert not bool((inst.targets == N).any()) and not bool((train.items == N).any())


def test_item_head_scores_n_plus_1_and_never_the_padding_column():
    head = NEXT_ITEM.build_head(16, NEXT_ITEM.n_out(synthetic()[0], {}), False)
    assert head.out_features == N + 1
    logits = torch.randn(4, N + 1, requires_grad=True)
    with torch.no_grad():
        logits[:, 0] = 1e6                        # even a huge padding logit takes no mass ...
    pred = NEXT_ITEM.predict(logits)
    assert bool(torch.isneginf(pred[:, 0]).all()) and torch.equal(pred[:, 1:], logits[:, 1:])
    assert torch.allclose(torch.softmax(pred, 1)[:, 0], torch.zeros(4))
    targets = torch.tensor([1, 5, N, 7])
    loss = NEXT_ITEM.loss(pred, targets)
    assert torch.isfinite(loss) and torch.allclose(loss, F.cross_entropy(logits[:, 1:], targets - 1))
    loss.backward()
    assert bool((logits.grad[:, 0] == 0).all())   # ... and gets no gradient
    assert torch.equal(mask_padding(logits.detach())[:, 1:], logits.detach()[:, 1:])
    assert get_task("next_item") is NEXT_ITEM
    with pytest.raises(ValueError, match="unknown sft task"):
        get_task("bogus")


def test_validation_and_test_items_are_never_training_targets(tmp_path, monkeypatch):
    seqs, weight = synthetic(sentinel=True)
    seen: list[torch.Tensor] = []
    real = sft.train_step

    def spy(model, task, opt, items, inst, targets, idx, max_items, **kw):
        seen.append(targets[idx])
        return real(model, task, opt, items, inst, targets, idx, max_items, **kw)

    monkeypatch.setattr(sft, "train_step", spy)
    _, res, log = sft.train(cfg(), seqs, weight, {}, rt(tmp_path))
    flat = torch.cat(seen)
    # E4SRec's instances: the empty prefix included, targets among the last max_items (6) training items
    assert flat.numel() == res.instances_per_epoch == int((seqs.lengths - 2).clamp(max=6).sum())
    assert not bool((flat == N).any())
    assert log.ranks is not None and res.valid is not None and res.valid.n_users == M


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-bert"])
def test_end_to_end_metrics_and_ranks(model, tmp_path):
    seqs, weight = synthetic()
    c = cfg(model, epochs=2)
    out = sft.run(c, SftIn(sequences=seqs.to_tensors(), item_embeddings={"weight": weight}, groups={}), rt(tmp_path))
    res, arts = out.result, out.artifacts
    assert res.valid_mse is None and res.valid is not None and res.test is not None
    assert res.shared_prefix == (model == "tiny-llama")
    assert res.instances_per_epoch == int((seqs.lengths - 2).clamp(max=6).sum())
    assert sorted(arts) == ["adapter", "heads", "ranks"]
    assert sorted(arts["heads"]) == ["item_head.weight", "linear_proj.bias", "linear_proj.weight"]   # bias-free head
    assert arts["heads"]["item_head.weight"].shape == (N + 1, 64)
    ranks = arts["ranks"]
    assert sorted(ranks) == ["test", "valid"]
    for split, m in (("valid", res.valid), ("test", res.test)):
        r = ranks[split]
        assert r.shape == (M,) and r.dtype == torch.int64 and bool(((r >= 0) & (r < N)).all())
        assert m == metrics(r, True) and m.n_users == M and m.mask_history is True   # the default


def test_ranks_match_a_direct_computation(tmp_path):
    seqs, weight = synthetic()
    model, res, log = sft.train(cfg(mask_history=False), seqs, weight, {}, rt(tmp_path))   # plain ranks
    assert model.template.prefix_len == len(prompt_tokens(model_tok(), 1, True, NEXT_ITEM_INSTRUCTION).prefix_ids)
    test_in, valid_in = seqs.prefix(1), seqs.train_part()
    with torch.no_grad():
        for u in (0, 7, M - 1):
            for inp, target, split in ((valid_in, seqs.valid_targets()[u], "valid"), (test_in, seqs.test_targets()[u], "test")):
                ids = inp.user(u)[-6:].long().unsqueeze(0)                    # most recent max_items
                h, _ = model.hidden(ids, torch.tensor([ids.shape[1]]))
                s = model.head(h)[0, 1:]                                      # items 1..N
                want = int((s > s[target - 1]).sum() + (s == s[target - 1]).sum() - 1)
                assert int(log.ranks[split][u]) == want, (u, split)
    # History masking only ever improves a rank, and is reported.
    v, t, t_alt, masked = e4srec.evaluate(model, seqs, max_items=6, batch_size=7, mask_history=True)
    assert v.mask_history and t.mask_history
    assert bool((masked["test"] <= log.ranks["test"]).all()) and bool((masked["valid"] <= log.ranks["valid"]).all())
    # test_alt is the other setting from the same scores: the unmasked run's own test metrics.
    assert t_alt.mask_history is False and t_alt == res.test and res.test_alt == t


def model_tok():
    from stages.lm.load import load_lm

    return load_lm("tiny-llama")[1]
