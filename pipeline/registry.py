"""Which stages exist, what each consumes, and which upstream stages provide it."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Callable

from pydantic import BaseModel

from schemas.augment import AugmentIn
from schemas.data import DataIn
from schemas.encode import EncodeIn
from schemas.group import GroupIn
from schemas.llamarec import LlamaRecIn
from schemas.names import SOURCES
from schemas.pipeline import PipelineConfig
from schemas.pretrain import PretrainIn
from schemas.runtime import Runtime
from schemas.sft import SftIn
from schemas.text import TextIn
from schemas.train import SOURCE_INPUTS, TrainIn


@dataclass(frozen=True)
class StageSpec:
    name: str
    module: str                      # exposes VERSION, MODULES (or modules(cfg)) and run(cfg, inp, rt)
    inputs: type[BaseModel]          # field names = artifact kinds consumed
    deps: Callable[[PipelineConfig], list[str]]
    doc: str
    # A stage that reads a file of the dataset (not an artifact): where that file is. Its sha256 is
    # hashed into the key as the input 'raw', and the stage gets it as its input `path`.
    locate: Callable[[PipelineConfig, Runtime], Path] | None = None

    def load(self) -> ModuleType:
        return import_module(self.module)

    def config(self, cfg: PipelineConfig) -> BaseModel:
        """The stage's config as it runs and as its key hashes it: with the defaults that depend on another
        setting filled in (`resolved()`, e.g. sft's per-task defaults in schemas/sft.py). Hashing the bare
        config would let a changed default serve a run made under the old one (schemas are not code the
        key digests)."""
        stage_cfg = getattr(cfg, self.name)
        return stage_cfg.resolved() if hasattr(stage_cfg, "resolved") else stage_cfg


# The stage that makes each train.source table (schemas/train.py: SOURCE_INPUTS; 'random' and 'none' need none).
SOURCE_STAGE = {source: [SOURCE_INPUTS[source][2]] if source in SOURCE_INPUTS else [] for source in SOURCES}


def _text_deps(cfg: PipelineConfig) -> list[str]:
    """sft and augment read the item text only when sft.item_text asks for it: only then does their key
    depend on the text file."""
    return ["text"] if cfg.sft.item_text != "none" else []


def _locate_dataset(cfg: PipelineConfig, rt: Runtime) -> Path:
    from pipeline.datasets import locate

    return locate(cfg.data.dataset, rt)


def _locate_items(cfg: PipelineConfig, rt: Runtime) -> Path:
    from pipeline.datasets import locate_items

    return locate_items(cfg.data.dataset, rt)


def _train_deps(cfg: PipelineConfig) -> list[str]:
    if cfg.train.variant == "tslrec":
        return ["data", *SOURCE_STAGE[cfg.train.source]]
    return {"base": ["data"], "ci": ["data", "group"]}[cfg.train.variant]


STAGES: dict[str, StageSpec] = {
    s.name: s
    for s in [
        StageSpec("data", "stages.data", DataIn, lambda c: [], "read and validate a dataset into CSR sequences",
                  locate=_locate_dataset),
        StageSpec("text", "stages.text", TextIn, lambda c: ["data"], "read the dataset's item text (<stem>.items.tsv)",
                  locate=_locate_items),
        StageSpec("pretrain", "stages.pretrain", PretrainIn, lambda c: ["data"], "train an ID backbone, keep its item embeddings"),
        StageSpec("group", "stages.group", GroupIn, lambda c: ["data", "pretrain"], "k-means item groups and user preference vectors"),
        StageSpec("sft", "stages.sft", SftIn, lambda c: ["data", *_text_deps(c), "pretrain", "group"],
                  "user-level LoRA SFT of the LLM (information reconstruction)"),
        StageSpec("augment", "stages.augment", AugmentIn, lambda c: ["data", *_text_deps(c), "pretrain", "group", "sft"],
                  "per-item enhanced embeddings (information augmentation)"),
        StageSpec("encode", "stages.encode", EncodeIn, lambda c: ["data", "text"],
                  "each item's text read by the LM, no SFT (the train.source=text control)"),
        StageSpec("train", "stages.train", TrainIn, _train_deps, "train a downstream backbone: base, ci or tslrec"),
        StageSpec("llamarec", "stages.llamarec", LlamaRecIn, lambda c: ["data", "text", "pretrain"],
                  "LlamaRec baseline: the pretrain SASRec's top-k re-ranked by a LoRA LM from item titles"),
    ]
}
ORDER = list(STAGES)
