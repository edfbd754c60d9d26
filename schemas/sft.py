"""Contract of `sft` (information reconstruction): LoRA SFT of a language model on users' group preferences."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from schemas.backbone import Metrics
from schemas.common import SEED_MAX, Frozen, TensorModel, Tensors
from schemas.names import AUTO, LM_PRECISIONS


LM_OWN = "model"   # sft.lm_dropout: the dropout rates of the LM's own config

# Settings whose default depends on the task (a field left at None takes its task's value here;
# `SftConfig.resolved()` fills them in). "group" keeps TSLRec's settings as they were; "next_item"
# follows the published E4SRec recipe (github.com/HestiaSky/E4SRec finetune.py / model.py):
# LoRA r=16, alpha 16 on the feed-forward projections, lr 3e-4, 100 warmup steps then cosine
# decay, an instance for the empty prefix too, targets only among each user's last maxlen (50)
# items (its SequentialDataset), a bias-free item head; 3 epochs as its Beauty runs.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "group": {"lora_r": 8, "lora_alpha": 16, "lr": 1e-3, "epochs": 1, "lr_schedule": "constant",
              "warmup_steps": 0, "head_bias": True, "empty_prefix": False, "recent_targets": False,
              "lm_dropout": LM_OWN},
    "next_item": {"lora_r": 16, "lora_alpha": 16, "lr": 3e-4, "epochs": 3, "lr_schedule": "cosine",
                  "warmup_steps": 100, "head_bias": False, "empty_prefix": True, "recent_targets": True,
                  "lm_dropout": LM_OWN},
}


class SftConfig(Frozen):
    model: str = Field(default="minilm-l6", description="Packaged name (minilm-l6, smollm2-135m), a local HF model dir, a .gguf file, or a hub id.")
    task: Literal["group", "next_item"] = Field(default="group", description="'group': user-level preference reconstruction (TSLRec); 'next_item': instance-level next-item SFT (E4SRec).")
    num_layers: int | None = Field(default=None, ge=1, description="Keep only the first n transformer layers (None keeps all).")
    lora_r: int | None = Field(default=None, ge=1, description="LoRA rank; None: the task's (group 8, next_item 16).")
    lora_alpha: int | None = Field(default=None, ge=1, description="LoRA alpha; None: the task's (16 for both).")
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    lm_dropout: float | Literal["model"] | None = Field(default=None, description="Dropout inside the base LM while it trains (its hidden-state and attention-probability dropouts; LoRA's is lora_dropout): 'model' keeps the rates of the model's own config (MiniLM: 0.1 and 0.1; Llama and SmolLM2: none), a number in [0, 1) sets all of them; None: the task's ('model' for both).")
    target_modules: list[str] | None = Field(default=None, description="LoRA target modules; None: the task's per architecture (group: attention projections; next_item: feed-forward projections).")
    lr: float | None = Field(default=None, gt=0, description="AdamW peak learning rate; None: the task's (group 1e-3, next_item 3e-4).")
    lr_schedule: Literal["constant", "cosine"] | None = Field(default=None, description="'constant', or linear warmup then cosine decay to 0 over all steps; None: the task's (group constant, next_item cosine).")
    warmup_steps: int | None = Field(default=None, ge=0, description="Linear warmup steps of the cosine schedule; None: the task's (group 0, next_item 100).")
    epochs: int | None = Field(default=None, ge=1, description="Passes over the training instances; None: the task's (group 1, next_item 3).")
    batch_size: int = Field(default=32, ge=1, description="Users per step.")
    max_items: int = Field(default=50, ge=1, description="Most recent training items per user in the prompt.")
    item_text: Literal["none", "title", "all"] = Field(default="none", description="Item text in the prompt: 'none' (the paper: each item is its projected ID embedding only); 'title' (the column named title, else the first text column) or 'all' (every column): each item becomes its text tokens, then its projected ID embedding, in sft and augment. Needs the dataset's items.tsv; task 'group' only.")
    item_text_tokens: int = Field(default=8, ge=1, description="Text tokens per item (the first ones) with sft.item_text. 8: no worse than 16 on the SFT's held-out error on Beauty, at half the cost (docs/item-text.md).")
    max_prompt_tokens: int | None = Field(default=None, ge=8, description="Longest prompt in positions; None: the model's context (max_position_embeddings). A user whose recent items do not fit is shown fewer, most recent items (never an item cut in the middle), and the 'prompt' target counts exactly those.")
    target: Literal["prompt", "all"] = Field(default="prompt", description="'group' target histogram: 'prompt' counts exactly the items the prompt shows (the last max_items training items); 'all' counts every training item (the group stage's user_pref).")
    head_bias: bool | None = Field(default=None, description="Bias in the task head; None: the task's (group yes, next_item no, as E4SRec's score layer).")
    empty_prefix: bool | None = Field(default=None, description="'next_item': also train the empty history -> first item instance (n instances per user instead of n-1); None: the task's (next_item yes).")
    recent_targets: bool | None = Field(default=None, description="'next_item': only each user's last max_items training items are targets (E4SRec's maxlen window; the empty prefix then only for users with at most max_items); None: the task's (next_item yes).")
    valid_fraction: float = Field(default=0.05, ge=0.0, lt=1.0, description="Held-out users for validation MSE ('group' only; 'next_item' validates on every user's validation item).")
    seed: int = Field(default=42, ge=0, le=SEED_MAX, description="Seed for init, split and shuffling.")
    share_prefix: bool = Field(default=True, description="Decoders: run the instruction prefix once per batch and reuse its KV cache (same results, less compute); ignored for encoders.")
    mask_history: bool = Field(default=True, description="'next_item' ranking: exclude the user's input items (as the backbones' default; RecBole's sequential full-sort does not).")
    eval_batch_size: int | None = Field(default=None, ge=1, description="Users per inference batch (validation MSE, 'next_item' ranking); None uses batch_size.")
    precision: Literal[(AUTO, *LM_PRECISIONS)] = Field(default=AUTO, description="Base LM weights' dtype ('auto': bf16 where the device has native bfloat16 (AVX512-BF16 or AMX on a CPU, a bf16 GPU), else fp32, as emulated bf16 is many times slower); bf16/fp16 also run its forward under autocast (LoRA, projection and heads stay fp32; fp16 on CUDA adds loss scaling).")
    gradient_checkpointing: bool = Field(default=False, description="Recompute the LM's activations in backward (less memory, more time per step); turns the shared-prefix KV reuse off.")
    load_in_4bit: bool = Field(default=False, description="Load the base LM in 4 bits (NF4, bitsandbytes: `pip install tslrec[quant]`); CUDA only, refused elsewhere.")

    @field_validator("lm_dropout")
    @classmethod
    def _a_rate(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, float) and not 0.0 <= v < 1.0:
            raise ValueError(f"sft.lm_dropout must be 'model' or a rate in [0, 1), got {v}")
        return v

    @model_validator(mode="after")
    def _text_needs_group(self) -> "SftConfig":
        if self.item_text != "none" and self.task != "group":
            raise ValueError("sft.item_text applies to sft.task='group' (TSLRec) only")
        return self

    def resolved(self) -> "SftConfig":
        """This config with every None task-dependent setting replaced by its task's default
        (target_modules stays None: it depends on the architecture, see stages/lm/tasks.py)."""
        fill = {k: v for k, v in TASK_DEFAULTS[self.task].items() if getattr(self, k) is None}
        return self.model_copy(update=fill) if fill else self


class SftIn(TensorModel):
    sequences: Tensors = Field(description="From `data`.")
    item_embeddings: Tensors = Field(description="From `pretrain`.")
    groups: Tensors = Field(description="From `group`: user_pref.")
    item_text: Tensors | None = Field(default=None, description="From `text`, with sft.item_text other than 'none'.")


class SftResult(Frozen):
    model: str = Field(description="Resolved model name.")
    hidden_size: int = Field(description="LLM hidden size H.")
    trainable_params: int = Field(description="Parameters trained (LoRA + projection + head).")
    train_loss: float = Field(description="Mean training loss of the last epoch.")
    valid_mse: float | None = Field(description="Validation MSE (Eq. 3 averaged per user); None when valid_fraction leaves no user.")
    valid_mse_mean_baseline: float | None = Field(description="Validation MSE of always predicting the mean training distribution; None without validation users.")
    seconds_per_epoch: float = Field(description="Median SFT seconds per epoch.")
    tokens_per_second: float = Field(description="Prompt positions processed per second in training.")
    instances_per_epoch: int = Field(description="LLM instances per epoch (users for 'group', training prefixes for 'next_item').")
    settings: dict[str, Any] = Field(default_factory=dict, description="The task-dependent settings as run (resolved lora_r, lora_alpha, target_modules, lr, lr_schedule, warmup_steps, epochs, head_bias, empty_prefix, recent_targets, target).")
    shared_prefix: bool = Field(default=False, description="Whether the shared-prefix KV reuse ran (decoder and share_prefix).")
    valid: Metrics | None = Field(default=None, description="'next_item': full ranking of every user's validation item (input: the training part).")
    test: Metrics | None = Field(default=None, description="'next_item': full ranking of every user's test item (input: training part + validation item).")
    test_alt: Metrics | None = Field(default=None, description="'next_item': the test ranking under the other history-masking setting (the same scores), as the backbones report it.")


class SftOut(TensorModel):
    result: SftResult
    artifacts: dict[str, Tensors] = Field(description="'adapter': LoRA tensors (peft names); 'heads': linear_proj.* and group_head.* / item_head.*; 'next_item' adds 'ranks': valid, test (M,) int64 0-based per-user ranks.")
