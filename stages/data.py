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

import hashlib
import math
import re
from pathlib import Path
from typing import Iterator

import torch

from schemas.data import DataConfig, DataIn, DataOut, DataResult
from stages.idmap import DIGITS, assign_ids, encode_tokens, natural_key
from stages.sequences import Sequences

VERSION = 1
MODULES = ["stages.data", "stages.idmap", "stages.sequences"]

BOM = b"\xef\xbb\xbf"
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")   # not tab, LF or CR

# user token -> (line where the user first appears, item tokens in time order)
UserItems = dict[str, tuple[int, list[str]]]


class DataFormatError(ValueError):
    """Malformed input; the message starts with `file:line:`."""


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-blank line; binary or non-UTF-8 content is an error."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                      f"{e.start + 1}); is this a binary file?") from None
            bad = CONTROL.search(line)
            if bad:
                raise DataFormatError(f"{path}:{lineno}: control character {bad.group()!r} at column "
                                      f"{bad.start() + 1}; is this a binary file?")
            if line.strip():
                yield lineno, line


def detect_format(path: Path) -> str:
    if path.suffix == ".inter":
        return "inter"
    for _, line in text_lines(path):
        return "pairs" if len(line.split()) == 2 else "lines"
    raise DataFormatError(f"{path}:1: file is empty")


def _id(tok: str, path: Path, lineno: int, what: str) -> str:
    """A positive decimal id of any size, in canonical form ('007' -> '7')."""
    if not DIGITS.fullmatch(tok):
        raise DataFormatError(f"{path}:{lineno}: {what} {tok[:40]!r} is not a positive integer")
    canon = tok.lstrip("0")
    if not canon:
        raise DataFormatError(f"{path}:{lineno}: {what} 0 is out of range (ids start at 1; 0 is padding)")
    return canon


def read_lines(path: Path) -> UserItems:
    users: UserItems = {}
    for lineno, line in text_lines(path):
        toks = line.split()
        user = _id(toks[0], path, lineno, "user id")
        if user in users:
            raise DataFormatError(f"{path}:{lineno}: user {user} already appeared on line {users[user][0]}")
        users[user] = (lineno, [_id(t, path, lineno, "item id") for t in toks[1:]])
    return users


def read_pairs(path: Path) -> UserItems:
    users: UserItems = {}
    for lineno, line in text_lines(path):
        toks = line.split()
        if len(toks) != 2:
            raise DataFormatError(f"{path}:{lineno}: expected 'user item', got {len(toks)} fields")
        user, item = _id(toks[0], path, lineno, "user id"), _id(toks[1], path, lineno, "item id")
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
    ordered = [[item_ids[tok] for tok in users[u][1]] for u in user_tokens]
    lengths = torch.tensor([len(s) for s in ordered], dtype=torch.int64)
    offsets = torch.zeros(len(ordered) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    items = torch.tensor([i for s in ordered for i in s], dtype=torch.int32)
    return Sequences(items=items, offsets=offsets, n_items=len(item_ids)), user_tokens, list(item_ids)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(cfg: DataConfig, inp: DataIn, rt) -> DataOut:
    fmt = detect_format(inp.path) if cfg.format == "auto" else cfg.format
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
