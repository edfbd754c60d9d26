"""`pretrain`: train an ID backbone on the training part of every sequence; keep its item table.

Its item embeddings seed the LLM stages (`group` clusters them, `sft` projects them).
"""
from __future__ import annotations

from functools import partial

import torch

from schemas.pretrain import PretrainConfig, PretrainIn, PretrainOut
from schemas.runtime import Runtime
from stages.backbones import Backbone, modules_for
from stages.backbones.embedding import ItemEmbedding
from stages.core.sequences import Sequences
from stages.core.trainer import fit, new_backbone, state_tensors

VERSION = 1
COMMON_MODULES = ["stages.pretrain", "stages.core.evaluate", "stages.core.linear_ce", "stages.core.precision",
                  "stages.core.sequences", "stages.core.trainer"]


def modules(cfg) -> list[str]:
    """Modules hashed into the cache key: the common ones and only the chosen backbone's."""
    return [*COMMON_MODULES, *modules_for(cfg.backbone.name)]


def model_for(cfg: PretrainConfig, seqs: Sequences) -> Backbone:
    """The seeded, untrained backbone, around a plain item table."""
    return new_backbone(cfg.backbone, cfg.trainer.seed, partial(ItemEmbedding, seqs.n_items, cfg.backbone.dim))


def run(cfg: PretrainConfig, inp: PretrainIn, rt: Runtime) -> PretrainOut:
    seqs = Sequences.from_tensors(inp.sequences)
    fitted = fit(model_for(cfg, seqs), seqs, cfg.trainer, rt, variant="pretrain", desc=f"pretrain {cfg.backbone.name}")
    with torch.no_grad():
        weight = fitted.model.embedding.all().detach().float().cpu().contiguous().clone()   # (N+1, d)
        weight[0].zero_()
    return PretrainOut(
        result=fitted.result,
        artifacts={
            "item_embeddings": {"weight": weight},
            "backbone": state_tensors(fitted.model),
            "ranks": {k: v.contiguous() for k, v in fitted.ranks.items()},
        },
    )
