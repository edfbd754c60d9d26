"""`train`: a downstream backbone with the item embedding of its variant.

base:   random item embeddings (nn.Embedding)
ci:     + a learnable embedding of each item's pre-grouped category (cluster_map from `group`)
tslrec: gate fusion with the frozen LLM-enhanced embeddings (from `augment`)
"""
from __future__ import annotations

from functools import partial

from schemas.pretrain import TrainConfig, TrainIn, TrainOut
from schemas.runtime import Runtime
from stages.backbones import modules_for
from stages.backbones.embedding import make_embedding
from stages.sequences import Sequences
from stages.trainer import state_tensors, train_backbone

VERSION = 1
COMMON_MODULES = ["stages.train", "stages.trainer", "stages.evaluate", "stages.sequences"]


def modules(cfg) -> list[str]:
    """Modules hashed into the cache key: the common ones and only the chosen backbone's."""
    return [*COMMON_MODULES, *modules_for(cfg.backbone.name)]


def _needed(tensors: dict | None, name: str, variant: str, field: str, stage: str):
    if tensors is None or name not in tensors:
        raise ValueError(f"variant '{variant}' needs {field}['{name}'], which the `{stage}` stage produces; "
                         f"run `{stage}` first (or pick variant 'base')")
    return tensors[name]


def run(cfg: TrainConfig, inp: TrainIn, rt: Runtime) -> TrainOut:
    seqs = Sequences.from_tensors(inp.sequences)
    extra = {}
    if cfg.variant == "ci":
        extra["cluster_map"] = _needed(inp.groups, "cluster_map", "ci", "groups", "group")
    elif cfg.variant == "tslrec":
        extra["enhanced"] = _needed(inp.enhanced, "embeddings", "tslrec", "enhanced", "augment")
        extra["standardize"] = cfg.enhanced_norm == "standardize"
    factory = partial(make_embedding, cfg.variant, seqs.n_items, cfg.backbone.dim, **extra)
    fit = train_backbone(cfg.backbone, cfg.trainer, seqs, factory, rt, variant=cfg.variant)
    return TrainOut(
        result=fit.result,
        artifacts={
            "backbone": state_tensors(fit.model),
            "ranks": {k: v.contiguous() for k, v in fit.ranks.items()},
        },
    )
