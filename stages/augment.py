"""The `augment` stage: information augmentation (paper, section 4.2).

Every item v_i is fed alone, as a one-item "user", through the SFT prompt with the LoRA adapter
merged into the base model, batched and without gradients. Its h (Eq. 1) is the knowledge-enhanced
embedding and softmax(W h + b) (Eq. 2) its latent category distribution. Agreement with the
k-means pre-grouping (paper, Fig. 4): C1 = top-1 category is the pre-group, C2 = the pre-group is
in the top 3 but not top 1, C3 = neither; fractions over items 1..N. `seconds` is the wall time of
the forward pass over all items (model loading excluded).
"""
from __future__ import annotations

import time

import torch

from schemas.augment import AugmentConfig, AugmentIn, AugmentOut, AugmentResult
from schemas.runtime import Runtime
from stages.core.distributed import parallel
from stages.core.item_text import item_text_tokens
from stages.lm.model import build_prompt_lm, load_adapted_lm, load_heads

VERSION = 1
MODULES = ["stages.augment", "stages.core.item_text", "stages.core.precision", "stages.core.sequences",
           "stages.lm.load", "stages.lm.precision", "stages.lm.prompt", "stages.lm.model"]


def agreement(probs: torch.Tensor, pre_group: torch.Tensor) -> tuple[float, float, float]:
    """(C1, C2, C3) fractions of rows whose pre-group is top-1 / in the top 3 but not top 1 / neither."""
    n = pre_group.numel()
    if n == 0:
        return 0.0, 0.0, 0.0
    top = probs.topk(min(3, probs.shape[1]), dim=1).indices
    hit = top == pre_group.unsqueeze(1)
    c1 = hit[:, 0]
    c2 = hit[:, 1:].any(1) & ~c1
    c3 = ~hit.any(1)
    return float(c1.double().mean()), float(c2.double().mean()), float(c3.double().mean())


def embed_items(model, items: torch.Tensor, batch_size: int, rt: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    """(h (n, H), softmax(W h + b) (n, K)) of each item fed alone as a one-item prompt, in batches."""
    hs, ps = [], []
    starts = range(0, items.numel(), batch_size)
    with torch.inference_mode(), rt.track("augment", len(starts)) as bar:
        for lo in starts:
            ids = items[lo:lo + batch_size].unsqueeze(1)                                # (B, 1)
            h, _ = model.hidden(ids, torch.ones(ids.shape[0], dtype=torch.long))
            hs.append(h.float().cpu())
            ps.append(torch.softmax(model.head(h).float(), dim=-1).cpu())
            bar.advance(1)
    hidden, k = model.lm.config.hidden_size, model.head.out_features
    return (torch.cat(hs) if hs else torch.zeros(0, hidden)), (torch.cat(ps) if ps else torch.zeros(0, k))


def run(cfg: AugmentConfig, inp: AugmentIn, rt: Runtime) -> AugmentOut:
    weight = inp.item_embeddings["weight"].to(torch.float32)
    n = weight.shape[0] - 1
    cluster_map = inp.groups["cluster_map"].long()
    lm, tok, meta = load_adapted_lm(inp.adapter, merge=True, cache_dir=rt.cache_dir, offline=rt.offline, device=rt.device)
    proj, head, head_name = load_heads(inp.heads)
    if head_name != "group_head":
        raise ValueError(f"augment needs a 'group' sft adapter; the heads artifact holds {head_name!r}")
    k = head.out_features
    model = build_prompt_lm(lm, tok, weight, k, head, head_name, linear_proj=proj)
    sft_cfg = meta["sft"]
    if sft_cfg.get("item_text", "none") != "none":    # as sft showed items: text tokens, then the embedding
        model.with_text(*item_text_tokens(sft_cfg["item_text"], sft_cfg["item_text_tokens"], tok, inp.item_text,
                                          weight.shape[0]))
    model = model.to(rt.device).eval()
    hidden = model.lm.config.hidden_size
    t0 = time.perf_counter()
    # Under torchrun each rank embeds a contiguous slice of items 1..N; the slices are gathered in rank order.
    ranks = parallel(rt)
    mine = ranks.shard(torch.arange(1, n + 1))                                   # (n_r,) item ids
    emb, probs = embed_items(model, mine, cfg.batch_size, rt)
    emb = torch.cat([torch.zeros(1, hidden), ranks.gather_rows(emb)])            # (N+1, H), row 0 padding
    probs = torch.cat([torch.zeros(1, k), ranks.gather_rows(probs)])             # (N+1, K)
    seconds = time.perf_counter() - t0
    c1, c2, c3 = agreement(probs[1:], cluster_map[1:n + 1])
    result = AugmentResult(hidden_size=hidden, c1=c1, c2=c2, c3=c3, seconds=seconds)
    return AugmentOut(result=result, artifacts={"enhanced": {"embeddings": emb.contiguous(), "category_probs": probs.contiguous()}})
