"""Item text: the items.tsv format, its artifact, the text-in-prompt assembly and its context fitting."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.runtime import Runtime
from schemas.sft import SftConfig
from stages import sft
from stages.core.files import DataFormatError
from stages.core.sequences import length_batches
from stages.core.item_text import decode_item_text, encode_item_text, item_strings, read_items_tsv, token_table
from stages.lm.prompt import interleave_text, window_counts
from stages.lm.tasks import GROUP
from tests.conftest import toy
from tests.unit.test_sft import synthetic

TOKENS = ["1", "2", "3", "10"]          # the user's own item ids of internal ids 1..4


def write(tmp_path, text: str | bytes, name: str = "items.tsv"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_reads_columns_in_internal_id_order_and_leaves_missing_items_empty(tmp_path):
    path = write(tmp_path, "item_id\ttitle\tbrand\n10\tLip  balm\tAcme\n002\tNail polish\t\n")
    columns, texts = read_items_tsv(path, TOKENS)
    assert columns == ["title", "brand"]
    assert texts[0] == ["", "", "Nail polish", "", "Lip balm"]     # row 0 padding; '002' is id 2; spaces collapsed
    assert texts[1] == ["", "", "", "", "Acme"]


@pytest.mark.parametrize("text,line,what", [
    ("item_id\ttitle\n1\ta\n99\tb\n", 3, "does not occur"),
    ("item_id\ttitle\n1\ta\n1\tb\n", 3, "already appeared on line 2"),
    ("item_id\ttitle\n1\ta\n2\tb\textra\n", 3, "expected 2 tab-separated fields"),
    ("id\ttitle\n1\ta\n", 1, "header"),
    (b"item_id\ttitle\n1\ta\n2\t\xff\n", 3, "not UTF-8"),
])
def test_bad_rows_name_file_and_line(tmp_path, text, line, what):
    path = write(tmp_path, text)
    with pytest.raises(DataFormatError) as e:
        read_items_tsv(path, TOKENS)
    assert str(e.value).startswith(f"{path}:{line}:") and what in str(e.value)


def test_artifact_round_trip_and_selections():
    columns, texts = ["genres", "title"], [["", "Action", ""], ["", "Heat", "Up"]]
    tensors = encode_item_text(columns, texts)
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    assert decode_item_text(tensors) == (columns, texts)
    assert item_strings(tensors, "title") == ["", "Heat", "Up"]                  # the column named title, not the first
    assert item_strings(tensors, "all") == ["", "Action; title: Heat", "title: Up"]
    no_title = encode_item_text(["categories"], [["", "Food, Bars"]])
    assert item_strings(no_title, "title") == ["", "Food, Bars"]                # Yelp: the first column


def test_token_table_cuts_to_max_tokens():
    from stages.lm.load import load_lm

    _, tok = load_lm("tiny-bert")
    ids, lengths = token_table(tok, ["", "lip balm with a very long name indeed", "x"], 4)
    assert lengths.tolist()[0] == 0 and lengths.tolist()[1] == 4 and ids.shape == (3, 4)
    assert ids[1].tolist() == tok("lip balm with a very long name indeed", add_special_tokens=False)["input_ids"][:4]


def test_interleave_puts_each_items_text_before_its_embedding():
    b, l, tt, h = 2, 3, 4, 5
    text = torch.randn(b, l, tt, h)
    tlen = torch.tensor([[2, 0, 4], [1, 3, 2]])
    items = torch.randn(b, l, h, requires_grad=True)
    counts = torch.tensor([3, 2])
    content, lengths = interleave_text(text, tlen, items, counts)
    for r in range(b):             # the naive construction, row by row
        want = torch.cat([torch.cat([text[r, j, :tlen[r, j]], items[r, j:j + 1]]) for j in range(counts[r])])
        assert lengths[r] == want.shape[0]
        assert torch.equal(content[r, :lengths[r]], want)
        assert torch.all(content[r, lengths[r]:] == 0)
    content.sum().backward()       # gradients reach the projected embeddings of the shown items only
    assert torch.equal(items.grad[1, 2], torch.zeros(h)) and torch.all(items.grad[0] == 1)


def test_window_counts_keeps_whole_most_recent_items_that_fit():
    items = torch.tensor([1, 2, 3, 4, 1, 2], dtype=torch.int32)
    cost = torch.tensor([1, 5, 2, 3, 4])            # positions per item id (0: padding)
    starts, ends = torch.tensor([0, 4]), torch.tensor([4, 6])
    # user 0 shows items 1,2,3,4 (costs 5,2,3,4): from the newest, 4 -> 4, 3 -> 7, 2 -> 9, 1 -> 14
    assert window_counts(items, starts, ends, cost, max_items=10, budget=9).tolist() == [3, 2]
    assert window_counts(items, starts, ends, cost, max_items=2, budget=100).tolist() == [2, 2]
    assert window_counts(items, starts, ends, cost, max_items=10, budget=3).tolist() == [0, 1]


def sft_setup(tmp_path, text: bool, **kw):
    """(cfg, task, training items, train instances, model, groups, head outputs) on the synthetic data; with
    text, each item titled 'item i word word ...' (2-6 tokens)."""
    seqs, weight, groups = synthetic()
    titles = [[""] + [f"item {i} " + "word " * (i % 5) for i in range(1, seqs.n_items + 1)]]
    item_text = encode_item_text(["title"], titles) if text else None
    base = dict(model="tiny-bert", epochs=1, precision="fp32", **(dict(item_text="title", item_text_tokens=6) if text else {}))
    cfg = SftConfig(**{**base, **kw})
    rt = Runtime(progress=False, cache_dir=tmp_path / "cache", offline=True)
    task, items, tr, _, n_out = sft.prepare(cfg, seqs, weight, groups)
    return cfg, task, items, tr, sft.make_model(cfg, task, weight, n_out, rt, item_text), groups, n_out


def test_prompts_fit_the_context_and_the_target_counts_what_they_show(tmp_path):
    cfg, task, items, tr, model, groups, n_out = sft_setup(tmp_path, True, max_items=8, max_prompt_tokens=40,
                                                           batch_size=8, valid_fraction=0.0)
    fitted = sft.fit_to_context(model, task, tr, items, groups, cfg)
    counts = fitted.ends - fitted.starts
    assert bool((counts < (tr.ends - tr.starts).clamp(max=8)).any())          # some prompts had to show fewer items
    for i in range(len(fitted)):
        ids, c = sft.batch_inputs(items, fitted, torch.tensor([i]), cfg.max_items)
        _, batch = model.hidden(ids, c)
        assert batch.attention_mask.sum() <= 40                                 # whole prompt within the budget
        shown = items[fitted.starts[i]:fitted.ends[i]].long()
        want = torch.bincount(groups["cluster_map"][shown], minlength=n_out).float()
        assert torch.allclose(fitted.targets[i], want / want.sum())             # the target counts exactly those


def test_train_step_counts_the_text_positions_it_trains_on(tmp_path):
    """tokens_per_second counts every real prompt position: each shown item's text tokens + its embedding."""
    cfg, task, items, tr, model, _, _ = sft_setup(tmp_path, True, max_items=8, batch_size=8, valid_fraction=0.0)
    idx = torch.arange(5)
    ids, counts = sft.batch_inputs(items, tr, idx, cfg.max_items)
    fixed = model.template.prefix.shape[0] + model.template.suffix.shape[0]
    text_len = model.text_len.cpu()
    want = sum(fixed + int(c) + int(text_len[ids[r, :int(c)].long()].sum()) for r, c in enumerate(counts.tolist()))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    _, tokens = sft.train_step(model, task, opt, items, tr, tr.targets, idx, cfg.max_items)
    assert int(text_len[1:].min()) > 0 and tokens == want
    assert int(sft.shown_positions(model, items, tr, cfg.max_items)[idx].sum()) + fixed * idx.numel() == want


def _padding(lengths: torch.Tensor, batches: list[torch.Tensor]) -> int:
    return sum(int(lengths[b].max()) * b.numel() - int(lengths[b].sum()) for b in batches)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(0, 40)), min_size=1, max_size=80), st.integers(1, 9),
       st.booleans())
def test_batches_sorted_by_prompt_positions_pad_no_more_than_by_item_count(rows, batch_size, training):
    """SFT batches by each prompt's positions (text included), not its item count. Cut into batches of one size,
    sorted contiguous cuts pad least, so it never pads more (here positions = counts + text tokens). With a short
    last batch either order can win by a little, so the rows here fill whole batches."""
    rows = rows * batch_size                     # a whole number of batches, in every window too
    counts = torch.tensor([c for c, _ in rows])
    positions = counts + torch.tensor([t for _, t in rows])
    by = {}
    for name, key in (("positions", positions), ("counts", counts)):
        gen = torch.Generator().manual_seed(0) if training else None
        by[name] = _padding(positions, length_batches(key, batch_size, gen, window=3))
    assert by["positions"] <= by["counts"]


def test_without_text_prompts_are_batched_by_item_count_as_before(tmp_path):
    _, _, items, tr, model, _, _ = sft_setup(tmp_path, False, max_items=6)
    assert torch.equal(sft.shown_positions(model, items, tr, 6), (tr.ends - tr.starts).clamp(max=6))


def test_without_text_the_instances_are_untouched(tmp_path):
    cfg, task, items, tr, model, groups, _ = sft_setup(tmp_path, False, max_items=6)
    assert sft.fit_to_context(model, task, tr, items, groups, cfg) is tr


def test_item_text_needs_the_group_task():
    with pytest.raises(ValueError, match="group"):
        SftConfig(task="next_item", item_text="title")


# -- through the CLI ------------------------------------------------------------------------------------
TINY = ["--set", "pretrain.trainer.epochs=1", "--set", "train.trainer.epochs=1", "--set", "sft.model=tiny-bert",
        "--set", "encode.model=tiny-bert", "--set", "sft.max_items=5", "--set", "group.k=4"]


def toy_with_text(data, skip: int = 3):
    path = toy(data)
    (path.parent / "toy.items.tsv").write_text("item_id\ttitle\n" + "".join(
        f"{i}\tthing {i} {'red' if i % 2 else 'blue'}\n" for i in range(1, 21) if i != skip))
    return path


def run_json(cli, *args):
    r = cli("--no-progress", "--threads", "1", *args, "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_text_file_changes_only_the_stages_that_read_it(cli, dirs):
    _, data = dirs
    toy_with_text(data)
    keys = {s: run_json(cli, "run", s, "-d", "toy", *TINY)["key"] for s in ("pretrain", "sft", "encode")}
    sft_title = run_json(cli, "run", "sft", "-d", "toy", *TINY, "--set", "sft.item_text=title")["key"]
    (data / "toy" / "toy.items.tsv").write_text("item_id\ttitle\n1\tsomething else\n")
    assert run_json(cli, "run", "pretrain", "-d", "toy", *TINY)["key"] == keys["pretrain"]
    assert run_json(cli, "run", "sft", "-d", "toy", *TINY)["key"] == keys["sft"]            # item_text=none
    assert run_json(cli, "run", "sft", "-d", "toy", *TINY, "--set", "sft.item_text=title")["key"] != sft_title
    assert run_json(cli, "run", "encode", "-d", "toy", *TINY)["key"] != keys["encode"]


def test_text_source_and_text_enhanced_train_end_to_end(cli, dirs):
    _, data = dirs
    toy_with_text(data)
    enc = run_json(cli, "run", "encode", "-d", "toy", *TINY)
    assert enc["result"]["n_empty"] == 1
    text = run_json(cli, "run", "train", "-d", "toy", *TINY, "--set", "train.variant=tslrec", "--set", "train.source=text",
                    "--set", "train.fusion=add")
    assert text["result"]["source"] == "text"
    enh = run_json(cli, "run", "augment", "-d", "toy", *TINY, "--set", "sft.item_text=title")
    plain = run_json(cli, "run", "augment", "-d", "toy", *TINY)
    assert enh["outputs"]["enhanced"]["digest"] != plain["outputs"]["enhanced"]["digest"]


def test_run_all_with_pretrain_source_computes_no_llm_stage(cli, dirs):
    _, data = dirs
    toy(data)
    r = cli("--no-progress", "--threads", "1", "run", "all", "-d", "toy", *TINY, "--set", "train.variant=tslrec",
            "--set", "train.source=pretrain", "--json")
    assert r.code == 0, r.err
    ran = {line.split()[1] for line in r.err.splitlines() if line.startswith(("computing", "cache hit"))}
    assert "pretrain" in ran and not ran & {"sft", "augment", "text", "encode"}


def test_text_profile_runs_fmlprec_on_the_text_alone_through_dual(cli, dirs):
    _, data = dirs
    toy_with_text(data)
    r = cli("--no-progress", "--threads", "1", "run", "all", "-d", "toy", *TINY, "--profile", "text", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert {row["backbone"] for row in out["summary"]} == {"fmlprec"}
    assert (out["pipeline"]["train"]["fusion"], out["pipeline"]["train"]["source"]) == ("dual", "text")
    ran = {line.split()[1] for line in r.err.splitlines() if line.startswith(("computing", "cache hit"))}
    assert "encode" in ran and not ran & {"sft", "augment"}          # the text alone: no SFT
    assert "the tslrec rows: train.fusion=dual, train.source=text" in r.err


def test_import_with_items_maps_own_ids_and_refuses_bad_rows(cli, dirs, tmp_path):
    _, data = dirs
    inter = tmp_path / "mine.txt"
    inter.write_text("".join(f"u{u} " + " ".join(f"{100 + (u + j) % 7}" for j in range(5)) + "\n" for u in range(1, 9))
                     .replace("u", "1"))
    bad = write(tmp_path, "item_id\ttitle\n100\ta\n555\tb\n", "bad.tsv")
    r = cli("data", "import", str(inter), "--name", "mine", "--items", str(bad))
    assert r.code != 0 and f"{bad}:3:" in r.err and "does not occur" in r.err
    assert not (data / "mine").exists()                                  # nothing half-imported
    good = write(tmp_path, "item_id\ttitle\n100\tfirst\n106\tlast\n", "good.tsv")
    assert cli("data", "import", str(inter), "--name", "mine", "--items", str(good)).code == 0
    stats = run_json(cli, "data", "stats", "-d", "mine")
    assert (stats["items_with_text"], stats["items_without_text"]) == (2, 5)


def test_packaged_beauty_titles_are_found_offline(dirs):
    from pipeline.datasets import ITEM_TEXT, locate_items
    from stages.core.files import file_sha256

    _, data = dirs
    path = locate_items("beauty", Runtime(progress=False, data_dir=data, offline=True))
    assert file_sha256(path) == ITEM_TEXT["beauty"].sha256


def test_missing_text_of_a_known_dataset_says_where_to_put_it(dirs):
    from pipeline.datasets import DatasetError, locate_items

    _, data = dirs
    with pytest.raises(DatasetError, match=r"put Yelp.items.tsv .* at .*yelp/Yelp.items.tsv"):
        locate_items("yelp", Runtime(progress=False, data_dir=data, offline=True))


def test_export_writes_the_text_table(cli, dirs, tmp_path):
    from safetensors.torch import load_file

    _, data = dirs
    toy_with_text(data)
    enc = cli("--no-progress", "--threads", "1", "run", "encode", "-d", "toy", *TINY, "--json")
    assert enc.code == 0, enc.err
    r = cli("export", "--from", "-", "--out", str(tmp_path / "text"), "--json", stdin=enc.out)
    assert r.code == 0, r.err
    table = load_file(str(tmp_path / "text" / "text_table.safetensors"))["embeddings"]
    assert table.shape[0] == 21 and torch.all(table[3] == 0) and torch.all(table[0] == 0)   # item 3 has no text
    assert "text read by the language model" in (tmp_path / "text" / "README.txt").read_text()
