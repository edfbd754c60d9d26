"""The data stage: formats, validation errors naming file and line, the split, synthetic data."""
from __future__ import annotations

import pytest
import torch

from pipeline.synthetic import SyntheticConfig, item_categories, make_synthetic, write_synthetic
from schemas.data import DataConfig, DataIn
from schemas.runtime import Runtime
from stages import data
from stages.core.sequences import Sequences

RT = Runtime(progress=False)


def parse(path, fmt="auto"):
    out = data.run(DataConfig(dataset="x", format=fmt), DataIn(path=path), RT)
    return out.result, Sequences.from_tensors(out.artifacts["sequences"])


def test_lines_pairs_and_inter_agree(tmp_path):
    (tmp_path / "a.txt").write_text("1 5 6 7\n2 7 8 9 5\n")
    (tmp_path / "b.txt").write_text("1 5\n1 6\n1 7\n2 7\n2 8\n2 9\n2 5\n")
    # inter: rows out of time order; timestamps decide
    (tmp_path / "c.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t6\t5\t20\n1\t5\t5\t10\n1\t7\t5\t30\n2\t7\t1\t1\n2\t8\t1\t2\n2\t5\t1\t4\n2\t9\t1\t3\n")
    ra, a = parse(tmp_path / "a.txt")
    rb, b = parse(tmp_path / "b.txt")
    rc, c = parse(tmp_path / "c.inter")
    assert torch.equal(a.items, b.items) and torch.equal(a.offsets, b.offsets)
    # every format remaps ids 5..9 to 1..5 in natural order: 5 items, not a 9-item catalogue
    assert (ra.n_users, ra.n_items, ra.n_interactions) == (2, 5, 7)
    assert a.items.tolist() == c.items.tolist() == [1, 2, 3, 3, 4, 5, 1]


def test_leave_one_out_split(tmp_path):
    (tmp_path / "a.txt").write_text("1 4 5 6 7\n2 1 2 3\n")   # ids 1..7: the map is the identity
    _, s = parse(tmp_path / "a.txt")
    assert s.test_targets().tolist() == [7, 3]
    assert s.valid_targets().tolist() == [6, 2]
    tr = s.train_part()
    assert tr.items.tolist() == [4, 5, 1] and tr.offsets.tolist() == [0, 2, 3]
    assert s.padded(3).tolist() == [[5, 6, 7], [1, 2, 3]]
    assert tr.padded(3).tolist() == [[0, 4, 5], [0, 0, 1]]


BAD = [
    ("1 5 x 7\n", ":1:", "not a positive integer"),
    ("1 5 6 7\n2 1 2\n", ":2:", "at least 3"),
    ("1 5 0 7\n", ":1:", "out of range"),
    ("1 5 6 7\n1 1 2 3\n", ":2:", "already appeared"),
]


@pytest.mark.parametrize("text,where,what", BAD)
def test_malformed_lines_name_file_and_line(tmp_path, text, where, what):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(data.DataFormatError) as e:
        parse(path, "lines")
    assert str(path) + where in str(e.value) and what in str(e.value)


def test_malformed_pairs_and_inter(tmp_path):
    (tmp_path / "p.txt").write_text("1 5\n1 6 7\n")
    with pytest.raises(data.DataFormatError, match=r"p\.txt:2: expected 'user item'"):
        parse(tmp_path / "p.txt", "pairs")
    (tmp_path / "i.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\tnoon\n")
    with pytest.raises(data.DataFormatError, match=r"i\.inter:2: timestamp"):
        parse(tmp_path / "i.inter")


def test_synthetic_is_seeded_and_planted(tmp_path):
    cfg = SyntheticConfig(users=50, items=30, categories=3)
    assert make_synthetic(cfg) == make_synthetic(cfg)
    assert make_synthetic(cfg) != make_synthetic(SyntheticConfig(users=50, items=30, categories=3, seed=1))
    cats = item_categories(cfg)
    assert sorted(set(cats[1:])) == [0, 1, 2] and cats[0] == -1
    seqs = make_synthetic(cfg)
    # users stay inside at most prefs_per_user categories
    assert all(len({cats[i] for i in s}) <= cfg.prefs_per_user for s in seqs)
    r, s = parse(write_synthetic(cfg, tmp_path / "syn.txt"))
    assert r.n_users == 50 and s.items.max() <= 30
