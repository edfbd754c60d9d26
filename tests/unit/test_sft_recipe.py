"""The SFT tasks' settings: the group target counts what the prompt shows (issue 12), and the
next-item task (E4SRec) follows its published recipe while the group task (TSLRec) keeps its own."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math

import pytest
import torch

from schemas.runtime import Runtime
from schemas.sft import SftConfig
from stages import sft
from stages.core.preference import preference_histogram
from stages.core.sequences import Sequences
from stages.lm.schedule import lr_scheduler
from stages.lm.tasks import GROUP, NEXT_ITEM, last_items

K = 3


def long_user_data() -> tuple[Sequences, dict[str, torch.Tensor]]:
    """User 0 has 12 training items (+ valid, test): 1 1 1 1 1 1 1 1 2 2 3 3; user 1 has 2 (4 5).
    Items 1 -> group 0, 2 -> group 1, 3 -> group 2, 4, 5 -> group 1."""
    u0 = [1] * 8 + [2, 2, 3, 3] + [4, 5]
    u1 = [4, 5, 1, 2]
    items = torch.tensor(u0 + u1, dtype=torch.int32)
    seqs = Sequences(items, torch.tensor([0, len(u0), len(u0) + len(u1)]), 5)
    cmap = torch.tensor([-1, 0, 1, 2, 1, 1])
    return seqs, {"cluster_map": cmap, "user_pref": preference_histogram(seqs.train_part(), cmap, K)}


def test_group_target_is_the_histogram_of_the_prompts_items():
    seqs, groups = long_user_data()
    train = seqs.train_part()
    cfg = SftConfig(max_items=5).resolved()
    inst = GROUP.instances(train, groups, cfg)
    ids, counts = sft.batch_inputs(train.items, inst, torch.arange(len(inst)), cfg.max_items)   # what the prompt shows
    for row in range(len(inst)):
        shown = ids[row, :counts[row]]
        want = torch.bincount(groups["cluster_map"][shown], minlength=K).float() / counts[row]
        assert torch.allclose(inst.targets[row], want), row
    assert ids[0].tolist() == [1, 2, 2, 3, 3]                      # user 0: the last 5 of 12 items
    assert torch.allclose(inst.targets[0], torch.tensor([0.2, 0.4, 0.4]))
    # "all" is the group stage's histogram of all 12 training items (8 of them in group 0).
    every = GROUP.instances(train, groups, SftConfig(max_items=5, target="all").resolved())
    assert torch.allclose(every.targets[0], torch.tensor([8 / 12, 2 / 12, 2 / 12]))
    assert torch.equal(every.targets[1], inst.targets[1])          # a short user: both choices agree


def test_last_items_keeps_each_users_most_recent_items_in_order():
    seqs = Sequences(torch.tensor([1, 2, 3, 4, 5, 6, 7], dtype=torch.int32), torch.tensor([0, 5, 5, 7]), 7)
    cut = last_items(seqs, 3)
    assert cut.offsets.tolist() == [0, 3, 3, 5] and cut.items.tolist() == [3, 4, 5, 6, 7]


def test_group_task_keeps_tslrecs_settings_and_next_item_follows_e4srec():
    assert SftConfig().resolved().model_dump() == {**SftConfig().model_dump(), "lora_r": 8, "lora_alpha": 16, "lr": 1e-3,
                                                   "epochs": 1, "lr_schedule": "constant", "warmup_steps": 0,
                                                   "head_bias": True, "empty_prefix": False,
                                                   "recent_targets": False, "lm_dropout": "model"}
    e4 = SftConfig(task="next_item").resolved()
    assert (e4.lora_r, e4.lora_alpha, e4.lr, e4.epochs, e4.lr_schedule, e4.warmup_steps, e4.head_bias, e4.empty_prefix,
            e4.recent_targets) == (16, 16, 3e-4, 3, "cosine", 100, False, True, True)
    assert SftConfig(task="next_item", lr=1e-3, epochs=1).resolved().lr == 1e-3     # what a user sets wins


@pytest.mark.parametrize("model,ffn", [("tiny-llama", {"gate_proj", "up_proj", "down_proj"}),
                                       ("tiny-bert", {"intermediate.dense", "output.dense"})])
def test_lora_targets_per_task(model, ffn, tmp_path):
    weight = torch.randn(6, 4)
    rt = Runtime(progress=False, cache_dir=tmp_path, offline=True)
    lora = {}
    for task in (GROUP, NEXT_ITEM):
        cfg = SftConfig(model=model, task=task.name)
        pm = sft.make_model(cfg, task, weight, 6, rt)
        lora[task.name] = {n.split(".lora_A")[0] for n, _ in pm.lm.named_parameters() if ".lora_A" in n}
        assert (pm.head.bias is None) == (task is NEXT_ITEM)        # E4SRec's score layer has no bias
    layer = lambda n: n.split(".layer.")[-1].split(".", 1)[-1] if ".layer." in n else n.split(".layers.")[-1].split(".", 2)[-1]
    assert {layer(n).split("mlp.")[-1] for n in lora["next_item"]} == ffn
    assert not any("attention" in n or "attn" in n for n in lora["next_item"])
    assert all("attention" in n or "attn" in n for n in lora["group"])
    assert len(lora["next_item"]) == 2 * len(ffn)                   # tiny models: 2 layers


def test_cosine_schedule_warms_up_then_decays_to_zero():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=3e-4)
    sched = lr_scheduler(opt, "cosine", 4, 20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0, 0.75e-4, 1.5e-4, 2.25e-4, 3e-4])
    assert lrs[12] == pytest.approx(3e-4 * 0.5 * (1 + math.cos(math.pi * 8 / 16)))
    assert opt.param_groups[0]["lr"] == pytest.approx(0, abs=1e-12) and all(a >= b for a, b in zip(lrs[4:], lrs[5:]))


@pytest.mark.parametrize("task,schedule", [("group", "constant"), ("next_item", "cosine")])
def test_sft_steps_the_tasks_schedule(task, schedule, tmp_path, monkeypatch):
    seqs, groups = long_user_data()
    seen: list[float] = []
    real = sft.train_step

    def spy(model, task_, opt, *a, **kw):
        seen.append(opt.param_groups[0]["lr"])
        return real(model, task_, opt, *a, **kw)

    monkeypatch.setattr(sft, "train_step", spy)
    cfg = SftConfig(model="tiny-bert", task=task, batch_size=2, epochs=2, warmup_steps=1, valid_fraction=0.0)
    _, res, _ = sft.train(cfg, seqs, torch.randn(6, 4), groups, Runtime(progress=False, cache_dir=tmp_path, offline=True))
    peak = cfg.resolved().lr
    assert res.settings["lr_schedule"] == schedule and res.settings["lr"] == peak
    if schedule == "constant":
        assert seen == [peak] * len(seen)
    else:
        assert seen[0] == 0 and seen[1] == pytest.approx(peak) and seen[-1] < peak


def test_next_item_targets_only_the_last_max_items_as_e4srec():
    """E4SRec's SequentialDataset: for train items t1..tn and maxlen L, targets t_{n-L+1}..t_n with
    their whole prefix; the empty prefix only where n <= L."""
    seqs, _ = long_user_data()                                        # user 0: 12 training items, user 1: 2
    train = seqs.train_part()
    inst = NEXT_ITEM.instances(train, {}, SftConfig(task="next_item", max_items=5).resolved())
    got = [(int(u), int(e - s), int(t)) for u, s, e, t in zip(inst.users, inst.starts, inst.ends, inst.targets)]
    u0 = train.user(0).tolist()
    assert got == [(0, p, u0[p]) for p in range(7, 12)] + [(1, 0, 4), (1, 1, 5)]
    every = NEXT_ITEM.instances(train, {}, SftConfig(task="next_item", max_items=5, recent_targets=False).resolved())
    assert len(every) == 12 + 2
