"""The `data` stage: parse and validate a raw interaction file into CSR sequences.

Formats: 'lines' (`user item item ...`, items in time order), 'pairs' (`user item` per line,
grouped by user in time order, SASRec style) and 'inter' (RecBole atomic file with a typed
header; each user's items ordered by timestamp, or in file order when there is no timestamp
column). Lines and pairs take positive decimal ids of any size; '.inter' takes any token.
Every file is UTF-8 (a leading BOM is fine), blank lines are skipped, and every error names
the file and line. Users' own ids are mapped to contiguous internal ids 1..N in natural order
(numbers by value first), and both maps are kept as artifacts ('user_ids', 'item_ids').
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from schemas.data import DataConfig, DataIn, DataOut, DataResult
from stages.core.files import DataFormatError, file_sha256, no_cyclic_gc, text_lines
from stages.core.idmap import assign_ids, encode_tokens, is_decimal, natural_key
from stages.core.sequences import Sequences

VERSION = 1
MODULES = ["stages.data", "stages.core.files", "stages.core.idmap", "stages.core.sequences"]

LEADING_ZERO = re.compile(r"(?:^|\s)0")

# user token -> (line where the user first appears, item tokens in time order)
UserItems = dict[str, tuple[int, list[str]]]


def detect_format(path: Path) -> str:
    if path.suffix == ".inter":
        return "inter"
    for _, line in text_lines(path):
        return "pairs" if len(line.split()) == 2 else "lines"
    raise DataFormatError(f"{path}:1: file is empty")


def _ids(line: str, path: Path, lineno: int) -> list[str]:
    """The line's ids (user first), each a positive decimal of any size in canonical form ('007' -> '7')."""
    toks = line.split()
    joined = "".join(toks)
    if is_decimal(joined) and not LEADING_ZERO.search(line):    # the common case, checked once per line
        return toks
    return [_id(t, path, lineno, "user id" if i == 0 else "item id") for i, t in enumerate(toks)]


def _id(tok: str, path: Path, lineno: int, what: str) -> str:
    if not is_decimal(tok):
        raise DataFormatError(f"{path}:{lineno}: {what} {tok[:40]!r} is not a positive integer")
    canon = tok.lstrip("0")
    if not canon:
        raise DataFormatError(f"{path}:{lineno}: {what} 0 is out of range (ids start at 1; 0 is padding)")
    return canon


def read_lines(path: Path) -> UserItems:
    users: UserItems = {}
    for lineno, line in text_lines(path):
        user, *items = _ids(line, path, lineno)
        if user in users:
            raise DataFormatError(f"{path}:{lineno}: user {user} already appeared on line {users[user][0]}")
        users[user] = (lineno, items)
    return users


def read_pairs(path: Path) -> UserItems:
    users: UserItems = {}
    for lineno, line in text_lines(path):
        toks = _ids(line, path, lineno)
        if len(toks) != 2:
            raise DataFormatError(f"{path}:{lineno}: expected 'user item', got {len(toks)} fields")
        user, item = toks
        users.setdefault(user, (lineno, []))[1].append(item)
    return users


def read_inter(path: Path) -> UserItems:
    """RecBole atomic file: tab-separated, header `field:type`; user and item ids are tokens."""
    lines = text_lines(path)
    _, head = next(lines, (1, ""))
    header = head.rstrip("\r\n").split("\t")
    names = [h.split(":")[0] for h in header]
    if "user_id" not in names or "item_id" not in names:
        raise DataFormatError(f"{path}:1: header needs user_id and item_id fields, got {header}")
    iu, ii = names.index("user_id"), names.index("item_id")
    it = names.index("timestamp") if "timestamp" in names else None
    rows: dict[str, list[tuple[float, int, str]]] = {}
    for lineno, line in lines:
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) != len(names):
            raise DataFormatError(f"{path}:{lineno}: expected {len(names)} fields, got {len(cols)}")
        user, item = cols[iu].strip(), cols[ii].strip()
        if not user or not item:
            raise DataFormatError(f"{path}:{lineno}: empty {'user_id' if not user else 'item_id'}")
        ts = _timestamp(cols[it], path, lineno) if it is not None else float(lineno)   # no column: file order
        rows.setdefault(user, []).append((ts, lineno, item))
    return {user: (r[0][1], [item for _, _, item in sorted(r)]) for user, r in rows.items()}   # ties: file order


def _timestamp(text: str, path: Path, lineno: int) -> float:
    try:
        ts = float(text)
    except ValueError:
        raise DataFormatError(f"{path}:{lineno}: timestamp {text[:40]!r} is not a number") from None
    if not math.isfinite(ts):
        raise DataFormatError(f"{path}:{lineno}: timestamp {text[:40]!r} is not finite")
    return ts


READERS = {"lines": read_lines, "pairs": read_pairs, "inter": read_inter}


def to_sequences(users: UserItems, path: Path, min_length: int) -> tuple[Sequences, list[str], list[str]]:
    """CSR sequences over internal ids, plus the user and item tokens (index i = internal id i+1)."""
    for user, (lineno, items) in users.items():
        if len(items) < min_length:
            raise DataFormatError(f"{path}:{lineno}: user {user} has {len(items)} interactions; "
                                  f"leave-one-out needs at least {min_length}")
    user_tokens = sorted(users, key=natural_key)
    item_ids = assign_ids(tok for _, items in users.values() for tok in items)
    flat = [item_ids[tok] for u in user_tokens for tok in users[u][1]]
    lengths = torch.tensor([len(users[u][1]) for u in user_tokens], dtype=torch.int64)
    offsets = torch.zeros(len(user_tokens) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    items = torch.tensor(flat, dtype=torch.int32)
    return Sequences(items=items, offsets=offsets, n_items=len(item_ids)), user_tokens, list(item_ids)


def run(cfg: DataConfig, inp: DataIn, rt) -> DataOut:
    fmt = detect_format(inp.path) if cfg.format == "auto" else cfg.format
    with no_cyclic_gc():
        users = READERS[fmt](inp.path)
        if not users:
            raise DataFormatError(f"{inp.path}:1: no interactions")
        seqs, user_tokens, item_tokens = to_sequences(users, inp.path, cfg.min_length)
    lengths = seqs.lengths
    m, n, nnz = seqs.n_users, seqs.n_items, int(seqs.items.numel())
    result = DataResult(
        dataset=cfg.dataset, n_users=m, n_items=n, n_interactions=nnz,
        avg_length=round(nnz / m, 3), density=nnz / (m * n) if m * n else math.nan,
        min_length=int(lengths.min()), max_length=int(lengths.max()), source_sha256=file_sha256(inp.path),
    )
    artifacts = {"sequences": seqs.to_tensors(), "user_ids": encode_tokens(user_tokens),
                 "item_ids": encode_tokens(item_tokens)}
    return DataOut(result=result, artifacts=artifacts)
