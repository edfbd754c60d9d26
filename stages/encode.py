"""The `encode` stage: each item's text read by a language model with no SFT (the text-only control).

`train.source=text` feeds this table to a fusion exactly as the enhanced table of `augment` is fed,
which separates what the LM already knows about an item (its reading of the text) from what TSLRec's
SFT teaches it. Each item's text (cut to `max_tokens`) goes through the model as its tokenizer would
give it (with its special tokens); pooling: the masked mean of the last hidden states (MiniLM's own
sentence-embedding pooling, then its L2 normalization) or the last real token's state (a causal LM's
summary). Items without text get a zero row, as the padding row 0.
"""
from __future__ import annotations

import time

import torch

from schemas.encode import EncodeConfig, EncodeIn, EncodeOut, EncodeResult
from schemas.runtime import Runtime
from stages.core.item_text import item_strings
from stages.lm.load import load_lm

VERSION = 1
MODULES = ["stages.encode", "stages.core.item_text", "stages.core.precision", "stages.lm.load", "stages.lm.precision"]


def identity(cfg: EncodeConfig, rt: Runtime) -> dict[str, str]:
    """Hashed into the run's key next to the config: what the model name stands for (its weights)."""
    from stages.lm.identity import model_identity

    return {"model": model_identity(cfg.model, rt.cache_dir, rt.offline)}


def pool(states: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, H) from hidden states (B, T, H) and a right-padded attention mask (B, T)."""
    if how == "last":
        last = mask.sum(1) - 1                                                       # (B,)
        return states[torch.arange(states.shape[0]), last]
    m = mask.unsqueeze(-1).to(states.dtype)                                          # (B, T, 1)
    return (states * m).sum(1) / m.sum(1).clamp(min=1)


@torch.inference_mode()
def encode_strings(model, tokenizer, strings: list[str], cfg: EncodeConfig, rt: Runtime) -> torch.Tensor:
    """(n, H) float32 vectors of `strings`, longest first in batches (less padding), returned in input order."""
    order = sorted(range(len(strings)), key=lambda i: -len(strings[i]))
    out = torch.zeros(len(strings), model.config.hidden_size)
    with rt.track("encode", -(-len(order) // cfg.batch_size)) as bar:
        for lo in range(0, len(order), cfg.batch_size):
            idx = order[lo:lo + cfg.batch_size]
            batch = tokenizer([strings[i] for i in idx], truncation=True, max_length=cfg.max_tokens, padding=True,
                              return_tensors="pt")
            batch = {k: v.to(rt.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            states = model(**batch).last_hidden_state.float()                        # (B, T, H)
            vec = pool(states, batch["attention_mask"], cfg.pooling)
            if cfg.normalize:
                vec = torch.nn.functional.normalize(vec, dim=-1)
            out[torch.tensor(idx)] = vec.cpu()
            bar.advance(1)
    return out


def run(cfg: EncodeConfig, inp: EncodeIn, rt: Runtime) -> EncodeOut:
    strings = item_strings(inp.item_text, cfg.item_text)                             # N+1, row 0 padding
    model, tok = load_lm(cfg.model, cache_dir=rt.cache_dir, offline=rt.offline, precision=cfg.precision, device=rt.device)
    if tok.pad_token is None:                      # decoders often have none; right padding is masked anyway
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    model = model.to(rt.device).eval()
    with_text = [i for i, s in enumerate(strings) if i > 0 and s]
    t0 = time.perf_counter()
    vectors = encode_strings(model, tok, [strings[i] for i in with_text], cfg, rt)   # (n_text, H)
    seconds = time.perf_counter() - t0
    table = torch.zeros(len(strings), model.config.hidden_size)
    if with_text:
        table[torch.tensor(with_text)] = vectors
    counts = [len(ids) for ids in tok([strings[i] for i in with_text], add_special_tokens=False)["input_ids"]] if with_text else []
    result = EncodeResult(model=cfg.model, hidden_size=int(model.config.hidden_size), n_empty=len(strings) - 1 - len(with_text),
                          mean_tokens=round(sum(min(c, cfg.max_tokens) for c in counts) / max(len(counts), 1), 2),
                          seconds=round(seconds, 3))
    return EncodeOut(result=result, artifacts={"text_table": {"embeddings": table.contiguous()}})
