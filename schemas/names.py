"""The names the pipeline offers, each defined here once: backbones, variants, fusions, item tables, precisions.

The config's `Literal` types are built from these tuples (so `tslrec config` and `--help` list them),
the stage code's maps from a name to its module are checked against them (tests), and the benchmarks'
lists derive from them. Plain tuples: the CLI's quick commands import the schemas, never torch.
"""
from __future__ import annotations

BACKBONES = ("sasrec", "gru4rec", "caser", "fmlprec")            # each a module of stages/backbones/
VARIANTS = ("base", "ci", "tslrec")                              # train.variant
# train.fusion: how a frozen item table meets the ID embeddings (stages/backbones/fusion.py). Each but
# 'ensemble' is an item embedding module; 'ensemble' mixes two whole models' scores (stages/core/ensemble.py).
EMBEDDING_FUSIONS = ("gate", "add", "init", "dual", "nullspace")
FUSIONS = (*EMBEDDING_FUSIONS, "ensemble")
ENSEMBLE_MEMBERS = ("adapter", *EMBEDDING_FUSIONS)               # train.ensemble_member: 'adapter' = no ID part
# train.source: the frozen item table of 'tslrec' (the stage that makes each: schemas/train.py SOURCE_INPUTS).
LM_SOURCES = ("enhanced", "text")                 # a language model's: after TSLRec's SFT (augment), or none (encode)
CONTROL_SOURCES = ("pretrain", "random")          # the controls: the pretrain backbone's own table, a fixed random one
SOURCES = (*LM_SOURCES, *CONTROL_SOURCES, "none")   # 'none': the ensemble's base + base control, no table
AUTO = "auto"                                                    # a precision resolved per device (stages/core/precision.py)
BACKBONE_PRECISIONS = ("fp32", "bf16")                           # the arithmetic a backbone trains in
LM_PRECISIONS = ("fp32", "bf16", "fp16")                         # a language model's weights
