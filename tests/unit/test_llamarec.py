"""The LlamaRec baseline: retriever candidates, the verbalizer, the combined full ranking, training, the stage."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from schemas.backbone import BackboneConfig
from schemas.llamarec import LlamaRecConfig
from schemas.runtime import Runtime
from stages import llamarec
from stages.backbones import build
from stages.backbones.embedding import ItemEmbedding
from stages.core.evaluate import metrics, rank_users
from stages.core.item_text import encode_item_text
from stages.core.sequences import Sequences
from stages.lm.load import load_lm
from stages.lm.rank_prompt import RankPrompt, collate
from stages.lm.retriever import Inputs, combined_ranks, load_retriever, retrieve
from stages.lm.verbalizer import Verbalizer, candidate_logits, label_ids
from tests.conftest import cycle_dataset
from tests.unit.test_item_text import toy_with_text


def sasrec(n_items: int, heads: int = 1, seed: int = 0):
    """A random SASRec whose attention matters (weights N(0, 0.5), not the tiny training init)."""
    torch.manual_seed(seed)
    model = build(BackboneConfig(name="sasrec", dim=8, layers=2, heads=heads, dropout=0.0, max_len=10),
                  ItemEmbedding(n_items, 8)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


def valid_inputs(seqs: Sequences) -> Inputs:
    return llamarec.eval_inputs(seqs)["valid"]


# -- verbalizer --------------------------------------------------------------------------------------
def test_verbalizer_is_the_causal_lms_next_token_logit_of_each_letter():
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = load_lm("tiny-llama")
    torch.manual_seed(0)
    full = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, intermediate_size=64, tie_word_embeddings=True)).eval()
    letters = label_ids(tok, 4)
    assert len(set(letters)) == 4
    prompts = [torch.randint(1000, 2000, (n,)).tolist() for n in (7, 12, 3)]     # right-padded to 12
    ids, mask, last = collate(prompts)
    real = torch.tensor([[True] * 4, [True] * 4, [True, True, True, False]])
    rows = full.model.get_input_embeddings().weight.detach()[letters]
    with torch.no_grad():
        got = candidate_logits(full.model, Verbalizer(rows), ids, mask, last, real)
    for r, p in enumerate(prompts):                                                 # each prompt alone, unpadded
        with torch.no_grad():
            want = full(input_ids=torch.tensor([p])).logits[0, -1, letters]
        n = int(real[r].sum())
        torch.testing.assert_close(got[r, :n], want[:n], atol=1e-4, rtol=1e-4)
    assert got[2, 3] == float("-inf")                                               # an empty slot never wins


# -- combined full ranking ---------------------------------------------------------------------------
def test_combined_ranks_on_a_hand_built_example():
    cands = torch.tensor([[4, 9, 2], [3, 5, 8], [1, 2, 3], [1, 2, 3], [5, 0, 0], [5, 0, 0]])
    targets = torch.tensor([2, 3, 7, 9, 5, 6])
    retriever = torch.tensor([2, 0, 7, 1, 0, 0])
    lm = torch.tensor([[0.1, 0.5, 0.9],           # target (slot 2) scored highest by the LM: rank 0
                       [0.2, 0.3, 0.2],           # target (slot 0) tied with slot 2, below slot 1: rank 2
                       [0.0, 0.0, 0.0],           # target not a candidate: the retriever's rank 7
                       [0.0, 0.0, 0.0],           # not a candidate but retriever rank 1 (a masked repeat): after the 3
                       [1.0, float("-inf"), float("-inf")],   # one real candidate, the target: rank 0
                       [1.0, float("-inf"), float("-inf")]])  # not a candidate, retriever 0: after the 1 candidate
    assert combined_ranks(retriever, cands, targets, lm).tolist() == [0, 2, 7, 3, 0, 1]


@pytest.mark.parametrize("mask", [False, True])
def test_lm_in_retriever_order_gives_back_the_retrievers_full_ranking(mask):
    """If the LM keeps the retriever's order, the two-stage ranks are the retriever's full-ranking ranks,
    for targets inside and outside the top-k alike (repeat targets aside: never candidates when masked)."""
    seqs = cycle_dataset(users=40, n_items=30, seed=1)                                # no repeats: 6..12 of 30 items
    inp = valid_inputs(seqs)
    model = sasrec(30)
    got = retrieve(model, inp, 5, mask)
    assert (got.candidates != 0).all()
    full = rank_users(model, seqs.train_part(), inp.targets, max_len=10, mask_history=mask)
    assert torch.equal(got.ranks, full)
    in_cands = (got.candidates == inp.targets.unsqueeze(1)).any(1)
    assert torch.equal(in_cands, full < 5)
    order = -torch.arange(5.0).expand(len(inp), 5)                                 # A > B > C > ...
    torch.testing.assert_close(combined_ranks(got.ranks, got.candidates, inp.targets, order), full)
    reversed_ = torch.arange(5.0).expand(len(inp), 5)                              # the LM reverses the top-5
    want = torch.where(full < 5, 4 - full, full)
    assert torch.equal(combined_ranks(got.ranks, got.candidates, inp.targets, reversed_), want)


def test_masked_candidates_exclude_every_history_item():
    seqs = cycle_dataset(users=20, n_items=25, seed=2)
    inp = valid_inputs(seqs)
    got = retrieve(sasrec(25), inp, 6, True)
    for u in range(len(inp)):
        hist = set(inp.items[inp.starts[u]:inp.ends[u]].tolist())
        assert not hist & set(got.candidates[u].tolist())


def test_retriever_rebuild_finds_the_head_count_and_refuses_other_ranks():
    seqs = cycle_dataset(users=40, n_items=30, seed=3)
    inp = valid_inputs(seqs)
    model = sasrec(30, heads=2, seed=5)
    ranks = rank_users(model, seqs.train_part(), inp.targets, max_len=10, mask_history=True)
    rebuilt, heads = load_retriever(model.state_dict(), inp, ranks)
    assert heads == 2
    other = rank_users(sasrec(30, heads=2, seed=6), seqs.train_part(), inp.targets, max_len=10, mask_history=True)
    with pytest.raises(ValueError, match="no head count"):
        load_retriever(model.state_dict(), inp, other)


# -- instances and prompts ---------------------------------------------------------------------------
def test_training_instances_use_only_the_training_part():
    # user 0: 1 2 3 | 4 | 5   user 1: 6 | 7 | 8 (one training item: no instance)   user 2: 9 10 | 11 | 12
    seqs = Sequences(torch.tensor([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], dtype=torch.int32), torch.tensor([0, 5, 8, 12]), 12)

    def pairs(which):
        inp, users = llamarec.train_inputs(seqs, which)
        return [(int(u), llamarec.history(inp, i), int(inp.targets[i])) for i, u in enumerate(users)]

    assert pairs("last") == [(0, [1, 2], 3), (2, [9], 10)]
    assert pairs("all") == [(0, [1], 2), (0, [1, 2], 3), (2, [9], 10)]


def test_random_candidates_hold_the_target_and_distinct_unseen_items():
    seqs = cycle_dataset(users=10, n_items=30)
    inp, _ = llamarec.train_inputs(seqs, "all")
    cands = llamarec.random_candidates(inp, 8, 30, torch.Generator().manual_seed(0))
    for i in range(len(inp)):
        row = cands[i].tolist()
        assert row[0] == int(inp.targets[i]) and len(set(row)) == 8 and 0 not in row
        assert not set(row[1:]) & set(llamarec.history(inp, i))
    shuf, labels = llamarec.shuffled(cands, inp.targets, torch.Generator().manual_seed(1))
    assert torch.equal(shuf.gather(1, labels.unsqueeze(1)).squeeze(1), inp.targets)
    assert torch.equal(shuf.sort(1).values, cands.sort(1).values) and not torch.equal(shuf, cands)


def test_prompt_drops_oldest_history_to_fit_and_never_a_candidate():
    _, tok = load_lm("tiny-llama")
    strings = ["", *[f"item number {i} with a title" for i in range(1, 13)]]
    roomy = RankPrompt.build(tok, strings, 3, 10, 4, 10_000)
    history, cands = list(range(1, 9)), [10, 11, 12]
    full = roomy.tokens(history, cands)
    assert len(full) == roomy.length(history, cands)
    one_item = len(roomy.history_marks[0]) + len(roomy.text[1])
    tight = RankPrompt.build(tok, strings, 3, 10, 4, len(full) - 2 * one_item)
    assert tight.fit(history, cands) == history[2:]                                   # the two oldest dropped
    assert len(tight.tokens(history, cands)) <= tight.context
    assert tight.tokens(history, cands)[-len(roomy.tail) - 5:] == full[-len(roomy.tail) - 5:]   # candidates intact
    with pytest.raises(ValueError, match="item_text_tokens"):
        RankPrompt.build(tok, strings, 3, 10, 4, 20).fit(history, cands)


# -- training ----------------------------------------------------------------------------------------
def test_training_loss_decreases_on_a_toy_problem(tmp_path):
    """The target is always the candidate titled 'gold', in a random slot: on a fixed batch of 12 prompts the
    LoRA LM fits the letters (the gradient goes through the verbalizer into LoRA; frozen, the loss stays put)."""
    n = 12
    strings = ["", "gold ring", *[f"plain thing {w}" for w in "abcdefghij"]]
    text = encode_item_text(["title"], [strings])
    cfg = LlamaRecConfig(model="tiny-llama", n_candidates=4, lr=1e-2, lora_dropout=0.0, lora_r=16, precision="fp32")
    rt = Runtime(progress=False, cache_dir=tmp_path / "cache", offline=True)
    ranker = llamarec.make_ranker(cfg, text, len(strings), rt)
    g = torch.Generator().manual_seed(0)
    inp = Inputs(torch.randint(2, 12, (n * 3,), generator=g), torch.arange(n) * 3, torch.arange(n) * 3 + 3,
                 torch.ones(n, dtype=torch.int64))
    negatives = torch.stack([torch.randperm(10, generator=g)[:3] + 2 for _ in range(n)])
    cands, labels = llamarec.shuffled(torch.cat([torch.ones(n, 1, dtype=torch.int64), negatives], 1), inp.targets, g)
    opt = torch.optim.AdamW([p for p in ranker.lm.parameters() if p.requires_grad], lr=cfg.lr)
    losses = [llamarec.train_step(ranker, opt, inp, cands, labels, torch.arange(n)) for _ in range(60)]
    assert abs(losses[0] - torch.log(torch.tensor(4.0))) < 0.1                     # chance among 4 letters
    assert sum(losses[-5:]) / 5 < 0.7 * losses[0], losses


def test_micro_batches_take_the_same_step_as_the_whole_batch(tmp_path):
    strings = ["", *[f"thing {w}" for w in "abcdefghij"]]
    text = encode_item_text(["title"], [strings])
    cfg = LlamaRecConfig(model="tiny-llama", n_candidates=3, lr=1e-2, lora_dropout=0.0, precision="fp32")
    rt = Runtime(progress=False, cache_dir=tmp_path / "cache", offline=True)
    g = torch.Generator().manual_seed(0)
    inp = Inputs(torch.randint(1, 11, (20,), generator=g), torch.arange(5) * 4, torch.arange(5) * 4 + 1 + torch.arange(5) % 3,
                 torch.randint(1, 11, (5,), generator=g))
    cands = torch.stack([torch.cat([t.view(1), torch.randperm(10, generator=g)[:2] + 1]) for t in inp.targets])
    labels = torch.zeros(5, dtype=torch.int64)
    after = []
    for micro in (None, 2):
        ranker = llamarec.make_ranker(cfg, text, len(strings), rt)
        opt = torch.optim.SGD([p for p in ranker.lm.parameters() if p.requires_grad], lr=1.0)   # update = gradient
        loss = llamarec.train_step(ranker, opt, inp, cands, labels, torch.arange(5), micro=micro)
        after.append((loss, llamarec.trainable_state(ranker.lm)))
    assert abs(after[0][0] - after[1][0]) < 1e-5
    for k, v in after[0][1].items():
        torch.testing.assert_close(v, after[1][1][k], atol=1e-5, rtol=1e-4)


# -- the stage through the CLI -----------------------------------------------------------------------
TINY = ["--set", "pretrain.trainer.epochs=3", "--set", "llamarec.model=tiny-llama", "--set", "llamarec.n_candidates=5",
        "--set", "llamarec.epochs=2", "--set", "llamarec.lr=1e-3", "--set", "llamarec.item_text_tokens=8"]


def test_stage_end_to_end_through_the_cli(cli, dirs):
    _, data = dirs
    toy_with_text(data)
    r = cli("--no-progress", "--threads", "1", "run", "llamarec", "-d", "toy", *TINY, "--json")
    assert r.code == 0, r.err
    rec = json.loads(r.out)
    res = rec["result"]
    assert res["valid"]["n_users"] == res["test"]["n_users"] == 30
    assert res["test_alt"]["mask_history"] is False and res["settings"]["retriever_heads"] == 1
    assert len(res["epoch_losses"]) == 2 and res["train_instances"] + res["skipped_instances"] > 0
    ranks = load_file(rec["outputs"]["ranks"]["path"])
    assert metrics(ranks["valid"], True).model_dump() == res["valid"]
    assert metrics(ranks["test"], True).model_dump() == res["test"]
    adapter = load_file(rec["outputs"]["adapter"]["path"])
    assert any("lora_A" in k for k in adapter) and "__config__" in adapter
    again = cli("--no-progress", "--threads", "1", "run", "llamarec", "-d", "toy", *TINY, "--json")
    assert json.loads(again.out)["key"] == rec["key"] and json.loads(again.out)["cached"]
