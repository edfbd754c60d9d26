"""`train`: a downstream backbone with the item embedding of its variant.

base:   random item embeddings (nn.Embedding)
ci:     + a learnable embedding of each item's pre-grouped category (cluster_map from `group`)
tslrec: a fusion (train.fusion, stages/backbones/fusion.py) of learnable ID embeddings with a frozen
        item table (train.source): the LLM-enhanced embeddings (from `augment`, the default), the
        pretrain backbone's own table (from `pretrain`) or a fixed random one; the last two are
        controls. The `ensemble` fusion trains two models and mixes their scores (stages/core/ensemble.py).
"""
from __future__ import annotations

from functools import partial

import torch

from schemas.backbone import TrainResult

from schemas.runtime import Runtime
from schemas.train import SOURCE_INPUTS, TrainConfig, TrainIn, TrainOut
from stages.backbones import modules_for
from stages.backbones.embedding import ItemEmbedding, make_embedding
from stages.backbones.fusion import build_fused, make_fusion
from stages.core.ensemble import fit_ensemble
from stages.core.evaluate import metrics
from stages.core.sequences import Sequences
from stages.core.trainer import fit, new_backbone, state_tensors

VERSION = 1
COMMON_MODULES = ["stages.train", "stages.core.evaluate", "stages.core.linear_ce", "stages.core.precision",
                  "stages.core.sequences", "stages.core.trainer"]
FUSION_MODULES = ["stages.backbones.fusion", "stages.core.ensemble"]
RANDOM_SOURCE_SEED = 0   # the 'random' control is one fixed table, the same for every seed and fusion


def modules(cfg) -> list[str]:
    """Modules hashed into the cache key: the common ones, only the chosen backbone's, and the fusion
    code only for 'tslrec' (editing a fusion must not invalidate cached base runs)."""
    fusion = FUSION_MODULES if cfg.variant == "tslrec" else []
    return [*COMMON_MODULES, *modules_for(cfg.backbone.name), *fusion]


def _needed(tensors: dict | None, name: str, variant: str, field: str, stage: str):
    if tensors is None or name not in tensors:
        raise ValueError(f"variant '{variant}' needs {field}['{name}'], which the `{stage}` stage produces; "
                         f"run `{stage}` first (or pick variant 'base')")
    return tensors[name]


def source_table(cfg: TrainConfig, inp: TrainIn, n_items: int) -> torch.Tensor | None:
    """The frozen (N+1, H) table of train.source; None for 'none' (the ensemble's base + base control)."""
    if cfg.source in SOURCE_INPUTS:
        field, name, stage = SOURCE_INPUTS[cfg.source]
        return _needed(getattr(inp, field), name, "tslrec", field, stage).float()
    if cfg.source == "random":
        g = torch.Generator().manual_seed(RANDOM_SOURCE_SEED)
        return torch.randn(n_items + 1, cfg.random_dim, generator=g)   # (N+1, H)
    return None


def fused_model(cfg: TrainConfig, fusion: str, table: torch.Tensor, n_items: int, seed: int):
    """Seed torch, then build the backbone around `fusion` over `table` (same order as new_backbone)."""
    torch.manual_seed(seed)
    emb = make_fusion(fusion, n_items, cfg.backbone.dim, table, standardize=cfg.enhanced_norm == "standardize",
                      whiten=cfg.init_whiten, semantic_share=cfg.semantic_share)
    return build_fused(cfg.backbone, emb)


def base_model(cfg: TrainConfig, n_items: int, seed: int):
    return new_backbone(cfg.backbone, seed, partial(ItemEmbedding, n_items, cfg.backbone.dim))


def run_ensemble(cfg: TrainConfig, seqs: Sequences, table: torch.Tensor | None, rt: Runtime) -> TrainOut:
    n = seqs.n_items
    second = partial(base_model, cfg, n) if table is None else partial(fused_model, cfg, cfg.ensemble_member, table, n)
    ens = fit_ensemble(cfg, seqs, partial(base_model, cfg, n), second, rt)
    a, b = ens.members
    mask = cfg.trainer.mask_history
    result = TrainResult(
        backbone=cfg.backbone.name, variant="tslrec", seed=cfg.trainer.seed,
        valid=metrics(ens.valid_ranks, mask), test=metrics(ens.test_ranks, mask),
        test_alt=metrics(ens.test_alt_ranks, not mask),
        best_epoch=b.result.best_epoch, epochs_run=a.result.epochs_run + b.result.epochs_run,
        seconds_per_epoch=b.result.seconds_per_epoch, seconds_per_eval=b.result.seconds_per_eval,
        train_seconds=round(a.result.train_seconds + b.result.train_seconds, 3),
        fusion="ensemble", source=cfg.source, ensemble_weight=ens.weight,
    )
    backbone = {f"{name}.{k}": v for name, f in (("base", a), ("second", b)) for k, v in state_tensors(f.model).items()}
    ranks = {"valid": ens.valid_ranks.contiguous(), "test": ens.test_ranks.contiguous()}
    return TrainOut(result=result, artifacts={"backbone": backbone, "ranks": ranks})


def model_for(cfg: TrainConfig, inp: TrainIn, seqs: Sequences):
    """The seeded, untrained backbone of a single-model run (every fusion but 'ensemble', which fits two)."""
    if cfg.variant == "tslrec":
        return fused_model(cfg, cfg.fusion, source_table(cfg, inp, seqs.n_items), seqs.n_items, cfg.trainer.seed)
    extra = {}
    if cfg.variant == "ci":
        extra["cluster_map"] = _needed(inp.groups, "cluster_map", "ci", "groups", "group")
    return new_backbone(cfg.backbone, cfg.trainer.seed,
                        partial(make_embedding, cfg.variant, seqs.n_items, cfg.backbone.dim, **extra))


def run(cfg: TrainConfig, inp: TrainIn, rt: Runtime) -> TrainOut:
    seqs = Sequences.from_tensors(inp.sequences)
    if cfg.variant == "tslrec" and cfg.fusion == "ensemble":
        return run_ensemble(cfg, seqs, source_table(cfg, inp, seqs.n_items), rt)
    fitted = fit(model_for(cfg, inp, seqs), seqs, cfg.trainer, rt, variant=cfg.variant,
                 desc=f"{cfg.variant} {cfg.backbone.name}")
    result = fitted.result
    if cfg.variant == "tslrec":
        result = result.model_copy(update={"fusion": cfg.fusion, "source": cfg.source})
    return TrainOut(
        result=result,
        artifacts={
            "backbone": state_tensors(fitted.model),
            "ranks": {k: v.contiguous() for k, v in fitted.ranks.items()},
        },
    )
