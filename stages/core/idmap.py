"""The user's own ids <-> contiguous internal ids 1..N, and the map kept as a tensor artifact.

Internal ids are assigned in *natural* order: tokens that are decimal numbers come first, by
numeric value (of any size: compared as digit strings, never converted to a machine integer),
then every other token in code-point order. A file whose ids already run 1..N (Beauty, ML-1M,
Yelp) therefore maps to itself, and cached results computed before the map existed stay valid.
"""
from __future__ import annotations

from typing import Iterable

import torch

from schemas.common import Tensors


def is_decimal(token: str) -> bool:
    """Only ASCII digits 0-9 (str.isdigit alone also takes '²' and other Unicode digits)."""
    return token.isascii() and token.isdigit()


def natural_key(token: str) -> tuple[int, int, str, str]:
    """Numbers by value (any length), then other tokens; the token itself breaks ties ('07' vs '7')."""
    if is_decimal(token):
        value = token.lstrip("0") or "0"
        return (0, len(value), value, token)
    return (1, 0, token, token)


def assign_ids(tokens: Iterable[str]) -> dict[str, int]:
    """Each distinct token -> 1..N in natural order (0 stays the padding id)."""
    return {tok: i for i, tok in enumerate(sorted(set(tokens), key=natural_key), 1)}


def encode_tokens(tokens: list[str]) -> Tensors:
    """tokens[i] is the user's id of internal id i+1; stored as UTF-8 bytes plus offsets.

    utf8: uint8 (total bytes,), offsets: int64 (n+1,): token i is utf8[offsets[i]:offsets[i+1]]."""
    blobs = [t.encode("utf-8") for t in tokens]
    offsets = torch.zeros(len(blobs) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor([len(b) for b in blobs], dtype=torch.int64), 0)
    data = torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8) if offsets[-1] > 0 \
        else torch.zeros(0, dtype=torch.uint8)
    return {"utf8": data.clone(), "offsets": offsets}


def decode_tokens(tensors: Tensors) -> list[str]:
    """Inverse of encode_tokens: the user's ids, index i = internal id i+1."""
    raw = tensors["utf8"].numpy().tobytes()
    bounds = tensors["offsets"].tolist()
    return [raw[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]
