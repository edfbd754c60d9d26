"""The `data` stage: parse and validate a raw interaction file into CSR sequences.

Formats: 'lines' (`user item item ...`, items in time order), 'pairs' (`user item` per line,
grouped by user in time order, SASRec style) and 'inter' (RecBole atomic file with a typed
header; each user's items ordered by timestamp). Every error names the file and line.
"""
from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from pathlib import Path

import torch

from schemas.data import DataConfig, DataIn, DataOut, DataResult
from stages.sequences import Sequences

VERSION = 1
MODULES = ["stages.data", "stages.sequences"]


class DataFormatError(ValueError):
    """Malformed input; the message starts with `file:line:`."""


def detect_format(path: Path) -> str:
    if path.suffix == ".inter":
        return "inter"
    with open(path) as f:
        for line in f:
            if line.strip():
                return "pairs" if len(line.split()) == 2 else "lines"
    raise DataFormatError(f"{path}:1: file is empty")


def _int(tok: str, path: Path, lineno: int, what: str) -> int:
    try:
        v = int(tok)
    except ValueError:
        raise DataFormatError(f"{path}:{lineno}: {what} {tok!r} is not an integer") from None
    if v < 1:
        raise DataFormatError(f"{path}:{lineno}: {what} {v} is out of range (ids start at 1; 0 is padding)")
    return v


def read_lines(path: Path) -> dict[int, tuple[int, list[int]]]:
    """user -> (line number, items)."""
    users: dict[int, tuple[int, list[int]]] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            toks = line.split()
            if not toks:
                raise DataFormatError(f"{path}:{lineno}: empty line")
            user = _int(toks[0], path, lineno, "user id")
            if user in users:
                raise DataFormatError(f"{path}:{lineno}: user {user} already appeared on line {users[user][0]}")
            users[user] = (lineno, [_int(t, path, lineno, "item id") for t in toks[1:]])
    return users


def read_pairs(path: Path) -> dict[int, tuple[int, list[int]]]:
    users: dict[int, tuple[int, list[int]]] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            toks = line.split()
            if len(toks) != 2:
                what = "empty line" if not toks else f"expected 'user item', got {len(toks)} fields"
                raise DataFormatError(f"{path}:{lineno}: {what}")
            user, item = _int(toks[0], path, lineno, "user id"), _int(toks[1], path, lineno, "item id")
            users.setdefault(user, (lineno, []))[1].append(item)
    return users


def read_inter(path: Path) -> dict[int, tuple[int, list[int]]]:
    """RecBole atomic file: tab-separated, header `field:type`; tokens are remapped to ids."""
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        names = [h.split(":")[0] for h in header]
        if "user_id" not in names or "item_id" not in names:
            raise DataFormatError(f"{path}:1: header needs user_id and item_id fields, got {header}")
        iu, ii = names.index("user_id"), names.index("item_id")
        it = names.index("timestamp") if "timestamp" in names else None
        rows: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
        first_line: dict[str, int] = {}
        for lineno, line in enumerate(f, 2):
            cols = line.rstrip("\n").split("\t")
            if not line.strip():
                raise DataFormatError(f"{path}:{lineno}: empty line")
            if len(cols) != len(names):
                raise DataFormatError(f"{path}:{lineno}: expected {len(names)} fields, got {len(cols)}")
            try:
                ts = float(cols[it]) if it is not None else float(lineno)
            except ValueError:
                raise DataFormatError(f"{path}:{lineno}: timestamp {cols[it]!r} is not a number") from None
            first_line.setdefault(cols[iu], lineno)
            rows[cols[iu]].append((ts, lineno, cols[ii]))
    item_ids = {tok: i for i, tok in enumerate(sorted({r[2] for v in rows.values() for r in v}, key=_natural), 1)}
    users = {}
    for u, tok in enumerate(sorted(rows, key=_natural), 1):
        ordered = sorted(rows[tok])          # by timestamp, ties by file order
        users[u] = (first_line[tok], [item_ids[r[2]] for r in ordered])
    return users


def _natural(tok: str) -> tuple[int, int | str]:
    return (0, int(tok)) if tok.isdigit() else (1, tok)


READERS = {"lines": read_lines, "pairs": read_pairs, "inter": read_inter}


def to_sequences(users: dict[int, tuple[int, list[int]]], path: Path, min_length: int) -> Sequences:
    for user, (lineno, items) in users.items():
        if len(items) < min_length:
            raise DataFormatError(f"{path}:{lineno}: user {user} has {len(items)} interactions; "
                                  f"leave-one-out needs at least {min_length}")
    ordered = [users[u][1] for u in sorted(users)]
    lengths = torch.tensor([len(s) for s in ordered], dtype=torch.int64)
    offsets = torch.zeros(len(ordered) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    items = torch.tensor([i for s in ordered for i in s], dtype=torch.int32)
    return Sequences(items=items, offsets=offsets, n_items=int(items.max()))


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
    seqs = to_sequences(users, inp.path, cfg.min_length)
    lengths = seqs.lengths
    m, n, nnz = seqs.n_users, seqs.n_items, int(seqs.items.numel())
    result = DataResult(
        dataset=cfg.dataset, n_users=m, n_items=n, n_interactions=nnz,
        avg_length=round(nnz / m, 3), density=nnz / (m * n) if m * n else math.nan,
        min_length=int(lengths.min()), max_length=int(lengths.max()), source_sha256=file_sha256(inp.path),
    )
    return DataOut(result=result, artifacts={"sequences": seqs.to_tensors()})
