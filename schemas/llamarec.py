"""Contract of `llamarec`: the LlamaRec baseline (Yue et al. 2023), a retriever's top-k re-ranked by a LoRA LM."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from schemas.backbone import Metrics
from schemas.common import SEED_MAX, Frozen, TensorModel, Tensors
from schemas.names import AUTO, LM_PRECISIONS


class LlamaRecConfig(Frozen):
    model: str = Field(default="smollm2-135m", description="Causal language model that ranks the candidates: a packaged name (smollm2-135m), a local HF model dir, a .gguf file, or a hub id. LlamaRec used Llama-2-7B in 4 bits.")
    n_candidates: int = Field(default=20, ge=2, le=26, description="Candidates the retriever proposes per user (LlamaRec: 20), labelled A, B, C, ... in the prompt.")
    max_history_items: int = Field(default=10, ge=1, description="Most recent history items shown in the prompt (LlamaRec: 20; 10 keeps the prompt short). Older ones are dropped first when a prompt would not fit the model's context.")
    item_text: Literal["title", "all"] = Field(default="title", description="What the prompt shows of an item: 'title' (the column named title, else the first text column) or 'all' (every column, 'title; name: value; ...').")
    item_text_tokens: int = Field(default=32, ge=1, description="Tokens of each item's text shown (the first ones; LlamaRec: 32).")
    train_instances: Literal["last", "all"] = Field(default="last", description="Training instances from the training part of each sequence: 'last' one per user (its items before the last -> its last training item); 'all' every prefix -> its next item (LlamaRec's; several times more instances). The validation and test items never reach training.")
    train_candidates: Literal["retriever", "random"] = Field(default="retriever", description="Candidates of a training instance: 'retriever' the retriever's top-k given the instance's history (instances whose target is not among them are skipped); 'random' the target and k-1 items drawn uniformly outside the history, redrawn every epoch (LlamaRec's). Shuffled in training either way; validation and test keep the retriever's order, as LlamaRec.")
    user_fraction: float = Field(default=1.0, gt=0.0, le=1.0, description="Seeded fraction of users whose instances train (when the LM's cost forces a subsample); validation and test always rank every user.")
    lora_r: int = Field(default=8, ge=1, description="LoRA rank (LlamaRec: 8).")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA alpha (LlamaRec: 32).")
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="LoRA dropout (LlamaRec: 0.05).")
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], description="LoRA target modules (LlamaRec: q_proj, v_proj).")
    lr: float = Field(default=1e-4, gt=0, description="AdamW learning rate, constant (LlamaRec: 1e-4, 100 warmup steps, then linear decay).")
    epochs: int = Field(default=1, ge=1, description="Passes over the training instances (LlamaRec: 1); the adapter of the epoch with the best validation NDCG@10 is kept.")
    batch_size: int = Field(default=12, ge=1, description="Prompts per optimisation step (LlamaRec on Beauty: 12).")
    micro_batch_size: int | None = Field(default=None, ge=1, description="Prompts per forward/backward pass within a step (gradient accumulation: the same step in less memory); None: the whole batch at once (a batch of long prompts through a 100M-parameter LM holds gigabytes of activations).")
    eval_batch_size: int | None = Field(default=None, ge=1, description="Prompts per inference batch; None uses batch_size.")
    mask_history: bool = Field(default=True, description="Exclude the user's input items from the ranking and from the candidates (the backbones' default). The result also carries the test metrics under the other setting (test_alt).")
    test_alt: bool = Field(default=True, description="Also rank the test users under the other history-masking setting (its own candidates, one more LM pass over the users whose target they hold).")
    seed: int = Field(default=42, ge=0, le=SEED_MAX, description="Seed of LoRA init, user subsample, shuffling and random candidates.")
    precision: Literal[(AUTO, *LM_PRECISIONS)] = Field(default=AUTO, description="LM weights' dtype ('auto': bf16 where the device has native bfloat16, else fp32); LoRA and the loss stay fp32.")


class LlamaRecIn(TensorModel):
    sequences: Tensors = Field(description="From `data`.")
    item_text: Tensors = Field(description="From `text`: the items' text the prompt shows.")
    backbone: Tensors = Field(description="From `pretrain`: the SASRec state dict, the retriever.")
    ranks: Tensors = Field(description="From `pretrain`: its per-user validation ranks, which the rebuilt retriever must reproduce.")


class LlamaRecResult(Frozen):
    model: str = Field(description="Resolved model name.")
    retriever: str = Field(description="The retriever: the pretrain stage's backbone and its inferred shape.")
    valid: Metrics = Field(description="Full ranking of every user's validation item (input: the training part): the LM's order within the candidates, the retriever's after them.")
    test: Metrics = Field(description="The same for the test item (input: training part + validation item), with the best epoch's adapter.")
    test_alt: Metrics | None = Field(default=None, description="Test metrics under the other history-masking setting (None with test_alt off).")
    retriever_valid: Metrics = Field(description="The retriever alone on the validation items (what the LM re-ranks).")
    retriever_test: Metrics = Field(description="The retriever alone on the test items.")
    recall_valid: float = Field(description="Fraction of users whose validation item is among their candidates (the most the LM can move).")
    recall_test: float = Field(description="Fraction of users whose test item is among their candidates.")
    train_instances: int = Field(description="Training prompts per epoch (after the user subsample and the skip rule).")
    skipped_instances: int = Field(description="Training instances skipped because their target was not among the retriever's candidates.")
    user_fraction: float = Field(description="Fraction of users whose instances trained.")
    epoch_losses: list[float] = Field(description="Mean cross-entropy over the candidates' label logits, per epoch.")
    best_epoch: int = Field(description="Epoch (1-based) whose adapter gave the best validation NDCG@10.")
    seconds_per_epoch: float = Field(description="Median seconds per training epoch (prompt building, forward, backward, step; validation excluded).")
    train_seconds: float = Field(description="Wall seconds of the whole stage (retrieval, training, evaluation).")
    mean_prompt_tokens: float = Field(description="Mean tokens per training prompt.")
    max_prompt_tokens: int = Field(description="Longest prompt (training, validation or test).")
    trainable_params: int = Field(description="LoRA parameters trained.")
    settings: dict[str, Any] = Field(default_factory=dict, description="The resolved settings: label tokens, LoRA targets, precision, verbalizer source.")


class LlamaRecOut(TensorModel):
    result: LlamaRecResult
    artifacts: dict[str, Tensors] = Field(description="'adapter': LoRA tensors in the sft adapter format (stages/lm/model.py, its config under 'sft'); 'ranks': valid, test (M,) int64 0-based final per-user ranks.")
