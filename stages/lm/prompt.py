"""Prompt assembly (paper, Eq. 1): [specials] d_inst  linear_proj(e_v1 .. e_vn)  d_res [specials].

The prompt is built directly as `inputs_embeds` (B, T, H), right-padded:

    position  0 .. P-1        : prefix = the tokenizer's leading specials ([CLS] for BERT, BOS for a
                                decoder whose tokenizer adds one) + the instruction tokens; identical
                                for every user
    position  P .. P+n-1      : the user's n projected item embeddings (time order, most recent max_items)
    position  P+n .. P+n+S-1  : suffix = the tokens of " Response:" (+ BERT's trailing [SEP])
    position  P+n+S .. T-1    : padding (attention_mask 0)

h^u is the final hidden state at position P+n+R-1, the last token of "Response:" (R = its token
count), for encoders and decoders alike. For an encoder the trailing [SEP] is kept after it, as the
tokenizer would put it, so ":" still sees it through bidirectional attention; for a decoder any
trailing special token is dropped (it could not influence h^u under causal attention).

Token embeddings of the prefix and suffix are computed once (`PromptTemplate.from_model`); a batch
is one gather from a small table, no tokenization per step. `PromptBatch.prefix_len` marks the
shared prefix: a decoder runs it once per batch and reuses its KV cache for every row
(`PromptLM.hidden`, see stages/lm/model.py). The instruction text is the task's (TSLRec's group
task uses INSTRUCTION; E4SRec's next-item task its own), formatted with k.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

INSTRUCTION = "Given the user's purchase history, predict the user's distribution among {k} purchase preferences."
NEXT_ITEM_INSTRUCTION = "Given the user's purchase history, predict the next possible item to be purchased."   # E4SRec
RESPONSE = " Response:"   # the leading space only matters to byte-level BPE (it reads as a new word)


@dataclass(frozen=True)
class PromptTokens:
    prefix_ids: list[int]    # leading specials + instruction
    suffix_ids: list[int]    # response (+ trailing specials for encoders)
    response_len: int        # R: tokens of the response text; h^u sits at suffix index R-1


def _split_specials(tokenizer: Any, text: str) -> tuple[list[int], list[int], list[int]]:
    """(leading specials, plain tokens, trailing specials) the tokenizer puts around `text`."""
    full = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    plain = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    for i in range(len(full) - len(plain) + 1):
        if full[i:i + len(plain)] == plain:
            return full[:i], plain, full[i + len(plain):]
    return [], plain, []


def prompt_tokens(tokenizer: Any, k: int, causal: bool, instruction: str = INSTRUCTION) -> PromptTokens:
    lead, inst, trail = _split_specials(tokenizer, instruction.format(k=k))
    response = list(tokenizer(RESPONSE, add_special_tokens=False)["input_ids"])
    if not response:
        raise ValueError("the tokenizer turns 'Response:' into no tokens")
    return PromptTokens(prefix_ids=lead + inst, suffix_ids=response + ([] if causal else trail), response_len=len(response))


@dataclass(frozen=True)
class PromptBatch:
    inputs_embeds: torch.Tensor    # (B, T, H)
    attention_mask: torch.Tensor   # (B, T) int64, 1 = real position
    last_index: torch.Tensor       # (B,) int64, position of h^u
    prefix_len: int                # P: positions 0..P-1 are identical for every row

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


class PromptTemplate(nn.Module):
    """Constant token embeddings of the prefix and suffix, and the batch assembler."""

    def __init__(self, prefix: torch.Tensor, suffix: torch.Tensor, response_len: int):
        super().__init__()
        self.register_buffer("prefix", prefix.detach().clone(), persistent=False)   # (P, H)
        self.register_buffer("suffix", suffix.detach().clone(), persistent=False)   # (S, H)
        self.response_len = response_len

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, k: int, causal: bool,
                   instruction: str = INSTRUCTION) -> "PromptTemplate":
        toks = prompt_tokens(tokenizer, k, causal, instruction)
        emb = model.get_input_embeddings()
        dev = emb.weight.device
        with torch.no_grad():
            prefix = emb(torch.tensor(toks.prefix_ids, dtype=torch.long, device=dev))
            suffix = emb(torch.tensor(toks.suffix_ids, dtype=torch.long, device=dev))
        return cls(prefix, suffix, toks.response_len)

    @property
    def prefix_len(self) -> int:
        return self.prefix.shape[0]

    def lengths(self, counts: torch.Tensor) -> torch.Tensor:
        """Prompt length of each row given its item count."""
        return self.prefix.shape[0] + counts + self.suffix.shape[0]

    def build(self, items: torch.Tensor, counts: torch.Tensor) -> PromptBatch:
        """items: (B, L, H) projected item embeddings, left-aligned (row b uses items[b, :counts[b]])."""
        b, l, h = items.shape
        p, s = self.prefix.shape[0], self.suffix.shape[0]
        dev = items.device
        counts = counts.to(dev)
        t = p + int(counts.max()) + s if b else p + s
        pos = torch.arange(t, device=dev).unsqueeze(0)               # (1, T)
        n = counts.unsqueeze(1)                                      # (B, 1)
        # Table rows: [prefix (P) | suffix (S) | zero (1) | items (B*L)]; index (B, T) picks the rows.
        zero_row = p + s
        item_idx = zero_row + 1 + torch.arange(b, device=dev).unsqueeze(1) * l + (pos - p)
        idx = torch.where(pos < p, pos,
              torch.where(pos < p + n, item_idx,
              torch.where(pos < p + n + s, p + (pos - p - n), torch.full_like(item_idx, zero_row))))
        table = torch.cat([self.prefix.to(items.dtype), self.suffix.to(items.dtype),
                           items.new_zeros(1, h), items.reshape(b * l, h)])
        embeds = table[idx]                                          # (B, T, H)
        mask = (pos < p + n + s).to(torch.long)
        last = (p + counts + self.response_len - 1).to(torch.long)
        return PromptBatch(inputs_embeds=embeds, attention_mask=mask, last_index=last, prefix_len=p)


def recent_items(items: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, max_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last min(ends-starts, max_items) items of each [start, end) slice of a CSR item array.

    Returns (ids (B, L) int64 left-aligned and zero-padded, counts (B,) int64), L = max count."""
    counts = (ends - starts).clamp(min=0, max=max_items)
    width = int(counts.max()) if counts.numel() else 0
    first = ends - counts
    col = torch.arange(width).unsqueeze(0)
    valid = col < counts.unsqueeze(1)
    idx = (first.unsqueeze(1) + col).clamp(max=max(items.numel() - 1, 0))
    ids = torch.where(valid, items[idx].long(), torch.zeros((), dtype=torch.long)) if width else torch.zeros(counts.numel(), 0, dtype=torch.long)
    return ids, counts.long()


def interleave_text(text_emb: torch.Tensor, text_len: torch.Tensor, item_emb: torch.Tensor,
                    counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item as its text tokens, then its projected embedding: the content between prefix and suffix.

    text_emb (B, L, Tt, H) token embeddings, text_len (B, L) tokens of each item's text, item_emb (B, L, H),
    counts (B,) items per row (row b uses items 0..counts[b]-1). Returns (content (B, C, H) left-aligned
    and zero-padded, lengths (B,)), ready for `PromptTemplate.build` as its `items`."""
    b, l, tt, h = text_emb.shape
    dev = item_emb.device
    used = torch.arange(l, device=dev).unsqueeze(0) < counts.unsqueeze(1)               # (B, L)
    tlen = torch.where(used, text_len, torch.zeros_like(text_len))                      # (B, L)
    seg = torch.where(used, tlen + 1, torch.zeros_like(tlen))                           # (B, L) positions per item
    start = torch.cumsum(seg, 1) - seg                                                  # (B, L)
    lengths = seg.sum(1)                                                                # (B,)
    c = int(lengths.max()) if b else 0
    row = torch.arange(b, device=dev).view(b, 1)
    k = torch.arange(tt, device=dev).view(1, 1, tt)
    is_text = k < tlen.unsqueeze(-1)                                                    # (B, L, Tt)
    text_pos = (row * c).unsqueeze(-1) + start.unsqueeze(-1) + k                        # (B, L, Tt) flat position
    item_pos = row * c + start + tlen                                                   # (B, L)
    idx = torch.cat([text_pos[is_text], item_pos[used]])                                # (n_text + n_items,)
    src = torch.cat([text_emb[is_text].to(item_emb.dtype), item_emb[used]])             # (n, H)
    content = item_emb.new_zeros(b * c, h).index_copy(0, idx, src)                      # differentiable in src
    return content.view(b, c, h), lengths


def window_counts(items: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, cost: torch.Tensor,
                  max_items: int, budget: int) -> torch.Tensor:
    """(n,) how many of the most recent items of each [start, end) slice a prompt shows: at most max_items,
    and as many as fit in `budget` positions when item i takes cost[i] positions (whole items only)."""
    out = []
    for lo in range(0, starts.numel(), 65536):                                          # bounded memory
        ids, counts = recent_items(items, starts[lo:lo + 65536], ends[lo:lo + 65536], max_items)   # (n, L)
        used = torch.arange(ids.shape[1]).unsqueeze(0) < counts.unsqueeze(1)
        c = torch.where(used, cost[ids], torch.zeros_like(ids))                         # (n, L) oldest first
        from_newest = c.flip(1).cumsum(1).flip(1)                                        # (n, L) positions of items j.. newest
        out.append((used & (from_newest <= budget)).sum(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)
