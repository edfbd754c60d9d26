"""Half-precision and 4-bit language models: autocast, loss scaling, and where 4-bit cannot work (dtypes:
stages/core/precision.py).

`precision` "bf16"/"fp16" loads the base model's weights in that dtype (half the memory of fp32) and
runs its forward under torch.autocast; LoRA weights, `linear_proj` and the heads stay float32 (peft
keeps adapters in float32), so `autocast_forward` hands float32 hidden states back to them. fp16
training needs loss scaling (`grad_scaler`); bf16 has fp32's range and does not.
4-bit (bitsandbytes NF4, the `quant` extra) needs CUDA and the package: `check_4bit` refuses in one
line otherwise, before anything is loaded.
"""
from __future__ import annotations

import functools
import importlib.util
from typing import Any

import torch

from stages.core.precision import DTYPES

def check_4bit(device: str) -> None:
    """Raise one clear line where 4-bit loading cannot work (no CUDA device, bitsandbytes missing)."""
    if not (str(device).startswith("cuda") and torch.cuda.is_available()):
        raise ValueError("sft.load_in_4bit needs a CUDA device (bitsandbytes 4-bit kernels): run with "
                         "--device cuda, or set sft.load_in_4bit=false")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError("sft.load_in_4bit needs the bitsandbytes package: pip install 'tslrec[quant]'")


def bnb_4bit_config(precision: str) -> Any:
    """NF4 weights with double quantisation; matmuls in `precision` (bf16 when fp32 was asked)."""
    from transformers import BitsAndBytesConfig

    compute = DTYPES[precision] if precision != "fp32" else torch.bfloat16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def _float32_outputs(out: Any) -> Any:
    """Float32 copies of a model output's hidden states (the heads and the loss are float32)."""
    for name in ("last_hidden_state",):
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
            setattr(out, name, value.float())
    return out


def autocast_forward(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Run `model`'s forward under torch.autocast(dtype) on whatever device its weights are, and return
    float32 hidden states. Wraps the instance's forward, so peft (which calls it) keeps the behaviour."""
    forward = model.forward

    @functools.wraps(forward)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        device = next(model.parameters()).device.type
        embeds = kwargs.get("inputs_embeds")
        if isinstance(embeds, torch.Tensor) and embeds.is_floating_point():
            # the float32 prompt embeddings meet the weights' dtype at the first norm (BERT's LayerNorm
            # refuses mixed dtypes on the CPU): cast them once here; gradients flow back through the cast
            kwargs["inputs_embeds"] = embeds.to(model.dtype if model.dtype.is_floating_point else dtype)
        with torch.autocast(device_type=device, dtype=dtype):
            return _float32_outputs(forward(*args, **kwargs))

    model.forward = wrapped
    return model


def grad_scaler(precision: str, device: str) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 on CUDA (fp16's 5 exponent bits underflow small gradients); else None."""
    if precision == "fp16" and str(device).startswith("cuda"):
        return torch.amp.GradScaler("cuda")
    return None
