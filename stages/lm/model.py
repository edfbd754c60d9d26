"""The LLM wrapper of Eq. 1-2 (PromptLM) and the adapter artifact format.

Adapter artifact ('adapter', tensors only): the LoRA tensors under the names peft writes to
adapter_model.safetensors (`get_peft_model_state_dict`), plus `__config__`, a uint8 tensor holding
UTF-8 JSON {"format": 1, "sft": <SftConfig as JSON>, "peft": <adapter_config.json as peft writes
it>, "hidden_size": H}. That is everything `augment` needs to rebuild the model: the base model
name and num_layers come from "sft", the LoRA config from "peft". `save_peft_dir` turns the
artifact into a directory `PeftModel.from_pretrained(base, dir)` reads.
Heads artifact ('heads'): `linear_proj.weight/bias` (d -> H) and `<task head>.weight/bias`.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stages.lm.load import is_encoder, load_lm, quiet_transformers
from stages.lm.prompt import PromptBatch, PromptTemplate

CONFIG_KEY = "__config__"
ADAPTER_FORMAT = 1


class PromptLM(nn.Module):
    """LLM(p_inst; linear_proj(e_v...); p_res) -> h^u, and a task head on top."""

    def __init__(self, lm: nn.Module, template: PromptTemplate, item_weight: torch.Tensor,
                 linear_proj: nn.Linear, head: nn.Module, head_name: str, causal: bool):
        super().__init__()
        self.lm = lm
        self.template = template
        self.register_buffer("item_weight", item_weight.detach().to(torch.float32), persistent=False)
        self.linear_proj = linear_proj
        self.head_name = head_name
        self.add_module(head_name, head)
        self.causal = causal
        self._lm_kwargs = {"use_cache": False} if causal else {}

    @property
    def head(self) -> nn.Module:
        return getattr(self, self.head_name)

    def hidden(self, ids: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, PromptBatch]:
        """h^u (B, H) for left-aligned item ids (B, L) with counts (B,)."""
        dev = self.item_weight.device
        items = self.linear_proj(self.item_weight[ids.to(dev)])
        batch = self.template.build(items, counts.to(dev))
        out = self.lm(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, **self._lm_kwargs)
        states = out[0] if isinstance(out, tuple) else out.last_hidden_state
        return states[torch.arange(states.shape[0], device=dev), batch.last_index], batch

    def heads_state(self) -> dict[str, torch.Tensor]:
        out = {f"linear_proj.{k}": v for k, v in self.linear_proj.state_dict().items()}
        out.update({f"{self.head_name}.{k}": v for k, v in self.head.state_dict().items()})
        return {k: v.detach().cpu().contiguous().clone() for k, v in out.items()}


def build_prompt_lm(lm: nn.Module, tokenizer: Any, item_weight: torch.Tensor, k: int, head: nn.Module,
                    head_name: str, linear_proj: nn.Linear | None = None) -> PromptLM:
    causal = not is_encoder(lm)
    hidden = lm.config.hidden_size
    template = PromptTemplate.from_model(lm, tokenizer, k, causal)
    proj = linear_proj if linear_proj is not None else nn.Linear(item_weight.shape[1], hidden)
    return PromptLM(lm, template, item_weight, proj, head, head_name, causal)


# -- adapter artifact -----------------------------------------------------------------------
def encode_json(obj: Any) -> torch.Tensor:
    data = json.dumps(obj, sort_keys=True).encode()
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def decode_json(t: torch.Tensor) -> Any:
    return json.loads(t.to(torch.uint8).cpu().numpy().tobytes().decode())


def peft_config_json(peft_model: Any, adapter_name: str = "default") -> dict[str, Any]:
    """adapter_config.json exactly as peft writes it."""
    with tempfile.TemporaryDirectory() as tmp:
        peft_model.peft_config[adapter_name].save_pretrained(tmp)
        return json.loads((Path(tmp) / "adapter_config.json").read_text())


def pack_adapter(peft_model: Any, sft_config: dict[str, Any]) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
    meta = {"format": ADAPTER_FORMAT, "sft": sft_config, "peft": peft_config_json(peft_model),
            "hidden_size": int(peft_model.config.hidden_size)}
    tensors[CONFIG_KEY] = encode_json(meta)
    return tensors


def adapter_meta(adapter: dict[str, torch.Tensor]) -> dict[str, Any]:
    if CONFIG_KEY not in adapter:
        raise ValueError(f"adapter artifact has no {CONFIG_KEY} tensor; re-run the sft stage")
    meta = decode_json(adapter[CONFIG_KEY])
    if meta.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"adapter artifact format {meta.get('format')} is not {ADAPTER_FORMAT}; re-run the sft stage")
    return meta


def save_peft_dir(adapter: dict[str, torch.Tensor], out_dir: Path | str) -> Path:
    """Write adapter_model.safetensors + adapter_config.json for `PeftModel.from_pretrained(base, out_dir)`."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = adapter_meta(adapter)
    (out / "adapter_config.json").write_text(json.dumps(meta["peft"], indent=2, sort_keys=True))
    save_file({k: v.contiguous() for k, v in adapter.items() if k != CONFIG_KEY}, str(out / "adapter_model.safetensors"))
    return out


def load_adapted_lm(adapter: dict[str, torch.Tensor], *, merge: bool = True, cache_dir: Path | str | None = None,
                    offline: bool = False) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(base model with the LoRA adapter applied (merged by default), tokenizer, adapter meta)."""
    from peft import PeftModel

    meta = adapter_meta(adapter)
    base, tok = load_lm(meta["sft"]["model"], num_layers=meta["sft"].get("num_layers"), cache_dir=cache_dir, offline=offline)
    with tempfile.TemporaryDirectory() as tmp, quiet_transformers():
        model = PeftModel.from_pretrained(base, save_peft_dir(adapter, tmp))
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model, tok, meta


def load_heads(heads: dict[str, torch.Tensor]) -> tuple[nn.Linear, nn.Linear, str]:
    """(linear_proj, task head, head name) from the 'heads' artifact."""
    names = {k.split(".", 1)[0] for k in heads} - {"linear_proj"}
    if "linear_proj.weight" not in heads or len(names) != 1:
        raise ValueError(f"heads artifact must hold linear_proj.* and one head; got {sorted(heads)}")
    head_name = names.pop()
    proj_w, head_w = heads["linear_proj.weight"], heads[f"{head_name}.weight"]
    proj = nn.Linear(proj_w.shape[1], proj_w.shape[0])
    head = nn.Linear(head_w.shape[1], head_w.shape[0])
    proj.load_state_dict({"weight": proj_w, "bias": heads["linear_proj.bias"]})
    head.load_state_dict({"weight": head_w, "bias": heads[f"{head_name}.bias"]})
    return proj, head, head_name
