"""LlamaRec's verbalizer: candidate j's score is the LM's next-token logit of its letter at the answer position.

The answer position is the prompt's last token (stages/lm/rank_prompt.py ends it with "### Response:\\n").
logit(letter) = h · W_out[letter], h the final (normalised) hidden state there, W_out the LM's output
layer: only the k letter rows are ever computed (no (B, V) logits). load_lm returns the model without
its head, so the rows come from the input embeddings when the model ties them (SmolLM2, Llama 3.2 1B,
Gemma; the random test models, which have no head of their own), else from `lm_head.weight` in the
model folder's safetensors. The rows stay frozen, as LlamaRec's LM head under LoRA.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def label_ids(tokenizer: Any, k: int) -> list[int]:
    """The token id of each of the first k letters (each must be one token of its own, all distinct)."""
    ids = [list(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in LETTERS[:k]]
    bad = [c for c, i in zip(LETTERS, ids) if len(i) != 1]
    if bad or len({i[0] for i in ids}) != k:
        raise ValueError(f"the tokenizer does not make each of the letters {LETTERS[:k]} one distinct token "
                         f"(multi-token: {bad}); the verbalizer needs them")
    return [i[0] for i in ids]


def output_rows(lm: Any, name: str, ids: list[int]) -> tuple[torch.Tensor, str]:
    """((k, H) float32 output-layer rows of the tokens `ids`, where they came from)."""
    from stages.lm.load import TINY

    idx = torch.tensor(ids)
    if getattr(lm.config, "tie_word_embeddings", False) or name in TINY:
        return lm.get_input_embeddings().weight.detach()[idx].float().clone(), "input embeddings (tied)"
    folder = Path(name).expanduser()
    if folder.is_dir():
        from safetensors import safe_open

        for path in sorted(folder.glob("*.safetensors")):
            with safe_open(str(path), framework="pt") as f:
                if "lm_head.weight" in f.keys():
                    return f.get_tensor("lm_head.weight")[idx].float().clone(), f"lm_head.weight of {path.name}"
    raise ValueError(f"model {name!r} has an output layer of its own (untied) and no lm_head.weight was found in "
                     f"a local folder's safetensors: the verbalizer needs it; use a tied model or a local folder")


class Verbalizer(nn.Module):
    """h (B, H) -> (B, k) logits of the k candidate letters."""

    def __init__(self, rows: torch.Tensor):
        super().__init__()
        self.register_buffer("rows", rows.float(), persistent=False)   # (k, H), frozen

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.float() @ self.rows.T


def candidate_logits(lm: nn.Module, verbalizer: Verbalizer, ids: torch.Tensor, mask: torch.Tensor,
                     last: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, k) float32 letter logits at each prompt's last token; -inf for empty slots (real (B, k) False)."""
    dev = verbalizer.rows.device
    out = lm(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=False)
    states = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]      # (B, T, H)
    h = states[torch.arange(states.shape[0], device=dev), last.to(dev)]                  # (B, H)
    return verbalizer(h).masked_fill(~real.to(dev), float("-inf"))
