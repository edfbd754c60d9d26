"""Which stages exist, what each consumes, and which upstream stages provide it."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import ModuleType
from typing import Callable

from pydantic import BaseModel

from schemas.data import DataIn
from schemas.group import GroupIn
from schemas.llm import AugmentIn, SftIn
from schemas.pipeline import PipelineConfig
from schemas.pretrain import PretrainIn, TrainIn


@dataclass(frozen=True)
class StageSpec:
    name: str
    module: str                      # exposes VERSION, MODULES (or modules(cfg)) and run(cfg, inp, rt)
    inputs: type[BaseModel]          # field names = artifact kinds consumed
    deps: Callable[[PipelineConfig], list[str]]
    doc: str

    def load(self) -> ModuleType:
        return import_module(self.module)

    def config(self, cfg: PipelineConfig) -> BaseModel:
        return getattr(cfg, self.name)


# The stage that provides each train.source table ('random' and 'none' need none).
SOURCE_STAGE = {"enhanced": ["augment"], "pretrain": ["pretrain"], "random": [], "none": []}


def _train_deps(cfg: PipelineConfig) -> list[str]:
    if cfg.train.variant == "tslrec":
        return ["data", *SOURCE_STAGE[cfg.train.source]]
    return {"base": ["data"], "ci": ["data", "group"]}[cfg.train.variant]


STAGES: dict[str, StageSpec] = {
    s.name: s
    for s in [
        StageSpec("data", "stages.data", DataIn, lambda c: [], "read and validate a dataset into CSR sequences"),
        StageSpec("pretrain", "stages.pretrain", PretrainIn, lambda c: ["data"], "train an ID backbone, keep its item embeddings"),
        StageSpec("group", "stages.group", GroupIn, lambda c: ["data", "pretrain"], "k-means item groups and user preference vectors"),
        StageSpec("sft", "stages.sft", SftIn, lambda c: ["data", "pretrain", "group"], "user-level LoRA SFT of the LLM (information reconstruction)"),
        StageSpec("augment", "stages.augment", AugmentIn, lambda c: ["data", "pretrain", "group", "sft"], "per-item enhanced embeddings (information augmentation)"),
        StageSpec("train", "stages.train", TrainIn, _train_deps, "train a downstream backbone: base, ci or tslrec"),
    ]
}
ORDER = list(STAGES)
