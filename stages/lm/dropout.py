"""A faster dropout for the base LM's training on the CPU: the same Bernoulli masks, fewer random bits.

CPU dropout (`torch.bernoulli_`) draws one 32-bit random number per element on a single thread, whatever
torch's thread count: 7.7 ns an element here, 26% of Beauty's title SFT (MiniLM's hidden and attention dropout,
0.1). `keep_mask` draws 64 random bits per four elements instead and compares 16 of them with the rate, so each
element is kept independently with probability 1 - p' and scaled by 1 / (1 - p'), where p' is p rounded to a
multiple of 2^-16 (0.1 -> 0.100006): the same dropout, up to that rounding, from a different random stream.
A bf16 input gets its scale in bf16 (1/0.9 -> 1.109375, 0.16% low), where torch scales in float32 before rounding.

`use_fast_dropout(model)` swaps its nn.Dropout modules for `FastDropout` (same `p`, same module tree) and
registers `FAST_EAGER`, the eager attention (softmax(QK^T * scale + mask) V) with this dropout on the attention
probabilities: PromptLM trains an encoder with attention dropout under it on the CPU (see its training_kernel).
GPUs keep torch's fused dropout.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

FAST_EAGER = "tslrec_eager"   # the attention kernel's name in transformers' AttentionInterface
_LEVELS = 1 << 16             # the rate's resolution: 16 random bits an element


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """(shape) float mask: 1 / (1 - p') where an element is kept, 0 where it is dropped (p' = p in 2^-16 steps)."""
    n = shape.numel()
    drop = round(p * _LEVELS)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(1 << 63), None)   # 64 random bits
    bits = words.view(torch.int16)[:n].view(shape)                # uniform on [-2^15, 2^15): four per word
    kept, dropped = (torch.full((), v, dtype=dtype, device=device) for v in (_LEVELS / (_LEVELS - drop), 0.0))
    return torch.where(bits >= drop - (1 << 15), kept, dropped)


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout(x, p, training), from `keep_mask`'s random bits."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    return x * keep_mask(x.shape, p, x.dtype, x.device)


class FastDropout(nn.Dropout):
    """nn.Dropout drawing its masks with `keep_mask` (an nn.Dropout still: code reading `.p` works unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def fast_eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                         **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' eager attention (BERT's `eager_attention_forward`) with `fast_dropout`. q (B, h, T, d),
    k and v (B, h_kv, S, d); returns ((B, T, h, d), (B, h, T, S))."""
    if key.shape[1] != query.shape[1]:                               # grouped-query attention: share each k/v head
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling     # (B, h, T, S)
    if attention_mask is not None:
        weights = weights + attention_mask[..., : key.shape[-2]]
    weights = nn.functional.softmax(weights, dim=-1)
    weights = fast_dropout(weights, dropout, module.training)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (B, T, h, d)
    return out, weights


def register_fast_eager() -> str:
    """Make FAST_EAGER a kernel name that transformers models accept (idempotent); the name. Its masks are the
    eager kernel's (additive floats: an unregistered name would get SDPA's boolean ones)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(FAST_EAGER, fast_eager_attention)
    AttentionMaskInterface.register(FAST_EAGER, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    return FAST_EAGER


def use_fast_dropout(model: nn.Module) -> int:
    """Swap every nn.Dropout in `model` for FastDropout in place (rates kept; LoRA's included) and register
    FAST_EAGER; the number of modules swapped."""
    register_fast_eager()
    swapped = 0
    for m in model.modules():
        if type(m) is nn.Dropout:
            m.__class__ = FastDropout
            swapped += 1
    return swapped
