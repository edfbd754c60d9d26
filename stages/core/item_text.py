"""Item text: the `<stem>.items.tsv` file beside a dataset, and its tensor artifact.

File: UTF-8 (a leading BOM is fine), tab-separated, a header row `item_id<TAB>col<TAB>...` naming at
least one text column, then one row per item in the user's own item ids (the ids of the interaction
file; they go through the same id map). Bad rows (unknown id, duplicate id, wrong column count, not
UTF-8, control characters) are a `DataFormatError` naming the file and line, as for interaction files.
Items without a row get empty text (counted, never an error): a catalogue may lack a title.

Artifact 'item_text' (tensors only, so it stays safetensors): `columns.utf8`/`columns.offsets` hold the
column names, and for column j `<j>.utf8`/`<j>.offsets` its N+1 strings (row 0 is the padding id, always
empty), each in `stages.core.idmap.encode_tokens`' layout.
"""
from __future__ import annotations

from pathlib import Path

import torch

from schemas.common import Tensors
from stages.core.idmap import decode_tokens, encode_tokens
from stages.core.files import DataFormatError, text_lines


def read_items_tsv(path: Path, item_tokens: list[str]) -> tuple[list[str], list[list[str]]]:
    """(column names, per column the N+1 texts by internal id) of `path`; item_tokens[i] is the user's
    id of internal id i+1 (the data stage's 'item_ids')."""
    internal = {tok: i for i, tok in enumerate(item_tokens, 1)}
    lines = text_lines(path)
    lineno, head = next(lines, (1, ""))
    header = head.rstrip("\r").split("\t")
    if header[0].strip() != "item_id" or len(header) < 2:
        raise DataFormatError(f"{path}:{lineno}: the header must be 'item_id' then at least one text column "
                              f"(tab-separated), got {head[:80]!r}")
    columns = [c.strip() for c in header[1:]]
    texts = [[""] * (len(item_tokens) + 1) for _ in columns]
    seen: dict[int, int] = {}
    for lineno, line in lines:
        cols = line.rstrip("\r").split("\t")
        if len(cols) != len(header):
            raise DataFormatError(f"{path}:{lineno}: expected {len(header)} tab-separated fields, got {len(cols)}")
        token = cols[0].strip()
        item = internal.get(token, internal.get(_canonical(token)))   # .inter keeps '007'; lines/pairs read it as 7
        if item is None:
            raise DataFormatError(f"{path}:{lineno}: item id {cols[0].strip()[:40]!r} does not occur in the "
                                  f"dataset's interactions")
        if item in seen:
            raise DataFormatError(f"{path}:{lineno}: item {cols[0].strip()[:40]} already appeared on line {seen[item]}")
        seen[item] = lineno
        for j, value in enumerate(cols[1:]):
            texts[j][item] = " ".join(value.split())    # one line of plain words: tabs, runs of spaces collapsed
    return columns, texts


def _canonical(token: str) -> str:
    """The interaction files' canonical form of a decimal id ('007' -> '7'); other tokens as they are."""
    return (token.lstrip("0") or "0") if token.isascii() and token.isdigit() else token


def encode_item_text(columns: list[str], texts: list[list[str]]) -> Tensors:
    out = {f"columns.{k}": v for k, v in encode_tokens(columns).items()}
    for j, col in enumerate(texts):
        out.update({f"{j}.{k}": v for k, v in encode_tokens(col).items()})
    return out


def decode_item_text(tensors: Tensors) -> tuple[list[str], list[list[str]]]:
    """Inverse of encode_item_text: (column names, per column the N+1 texts)."""
    columns = decode_tokens({"utf8": tensors["columns.utf8"], "offsets": tensors["columns.offsets"]})
    texts = [decode_tokens({"utf8": tensors[f"{j}.utf8"], "offsets": tensors[f"{j}.offsets"]})
             for j in range(len(columns))]
    return columns, texts


def item_strings(tensors: Tensors, which: str) -> list[str]:
    """The N+1 strings an LM reads for each item: 'title' is the column named title (the first text column
    when none is, e.g. Yelp's categories); 'all' joins every column as 'first; name: value; ...'."""
    columns, texts = decode_item_text(tensors)
    if which == "title":
        return texts[columns.index("title") if "title" in columns else 0]
    if which != "all":
        raise ValueError(f"unknown item text selection {which!r}; use 'title' or 'all'")
    out = []
    for row in zip(*texts):
        parts = [row[0], *(f"{name}: {v}" for name, v in zip(columns[1:], row[1:]) if v)]
        out.append("; ".join(p for p in parts if p))
    return out


def token_table(tokenizer, strings: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (N+1, T) int64 right-padded with 0, lengths (N+1,) int64): each string's tokens without special
    tokens, cut to the first max_tokens. Row 0 (padding) and items without text have length 0."""
    encoded = tokenizer(strings, add_special_tokens=False)["input_ids"]
    cut = [list(ids[:max_tokens]) for ids in encoded]
    width = max((len(c) for c in cut), default=0)
    ids = torch.zeros(len(cut), max(width, 1), dtype=torch.int64)
    for i, c in enumerate(cut):
        if c:
            ids[i, :len(c)] = torch.tensor(c, dtype=torch.int64)
    lengths = torch.tensor([len(c) for c in cut], dtype=torch.int64)
    return ids, lengths


def item_text_tokens(which: str, max_tokens: int, tokenizer, item_text: Tensors | None,
                     n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (N+1, Tt), lengths (N+1,)) of each item's text as `sft.item_text` shows it (sft and augment alike)."""
    if item_text is None:
        raise ValueError(f"sft.item_text={which!r} needs the `text` stage's item_text (the dataset's items.tsv)")
    strings = item_strings(item_text, which)
    if len(strings) != n_rows:
        raise ValueError(f"item text has {len(strings)} rows; the item embeddings have {n_rows}")
    return token_table(tokenizer, strings, max_tokens)
