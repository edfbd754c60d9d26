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

import inspect
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stages.lm.load import is_encoder, load_lm, quiet_transformers
from stages.lm.prompt import INSTRUCTION, PromptBatch, PromptTemplate, interleave_text

CONFIG_KEY = "__config__"
EAGER_MAX_POSITIONS = 256   # see PromptLM.training_kernel
ADAPTER_FORMAT = 1


def attention_dropout(config: Any) -> float:
    """The attention-probability dropout of a transformers config (BERT's name or Llama's), 0 if none."""
    return float(getattr(config, "attention_probs_dropout_prob", None) or getattr(config, "attention_dropout", None) or 0.0)


def cache_names(lm: nn.Module) -> tuple[str, str]:
    """(forward kwarg, output attribute) of the KV cache: transformers 5 renamed `past_key_values`
    to `cache` (the old kwarg is deprecated, and 4.x only knows the old one)."""
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    name = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
    return name, name


class PromptLM(nn.Module):
    """LLM(p_inst; linear_proj(e_v...); p_res) -> h^u, and a task head on top.

    Shared prefix (decoders only): every prompt starts with the same P instruction positions, and
    under causal attention their hidden states and keys/values do not depend on what follows. So
    the prefix runs once per batch at batch size 1 (in training too: LoRA changes every step, and
    its gradient flows back through that single pass from all B rows), its KV cache is repeated
    over the batch, and the model only runs positions P..T-1 of each row on top of it. Same h^u
    up to float rounding; with lora_dropout > 0 the prefix draws one dropout mask per batch
    instead of one per row. Encoders (bidirectional: the prefix sees the items) use the plain path.
    """

    def __init__(self, lm: nn.Module, template: PromptTemplate, item_weight: torch.Tensor,
                 linear_proj: nn.Linear, head: nn.Module, head_name: str, causal: bool, share_prefix: bool = True):
        super().__init__()
        self.lm = lm
        self.template = template
        self.register_buffer("item_weight", item_weight.detach().to(torch.float32), persistent=False)
        self.linear_proj = linear_proj
        self.head_name = head_name
        self.add_module(head_name, head)
        self.causal = causal
        self.share_prefix = share_prefix
        self._lm_kwargs = {"use_cache": False} if causal else {}
        self._cache_kw, self._cache_out = cache_names(lm) if causal else ("", "")
        self.register_buffer("text_ids", None, persistent=False)   # (N+1, Tt) item text tokens (sft.item_text), see with_text
        self.register_buffer("text_len", None, persistent=False)   # (N+1,)
        self.attn_own = getattr(lm.config, "_attn_implementation", None)    # the model's own kernel, e.g. 'sdpa'
        self.eager_training = True                                           # see training_kernel; False: attn_own always
        self.eager_kernel = "eager"                                          # or dropout.FAST_EAGER (use_fast_dropout)

    def train(self, mode: bool = True) -> "PromptLM":
        """Train mode attends with `training_kernel` (decided again per step by the prompt's length); eval mode
        with the model's own kernel."""
        super().train(mode)
        self._attend(self.training_kernel(None) if mode else self.attn_own)
        return self

    def training_kernel(self, length: int | None) -> str | None:
        """The attention kernel of a training step over `length` positions (None: not known yet).

        On the CPU, where the LM has attention dropout: eager. CPU SDPA has no kernel with dropout and falls back
        to a math path that keeps float32 copies of every (B, heads, T, T) matrix. MiniLM at (B, T) = (32, 512),
        bf16, one thread: a training step took 23 s and 10.3 GiB under SDPA, 16 s and 6.4 GiB eagerly with the
        same dropout (attention-kernel-minilm.json); Beauty's title SFT epoch, 1.24x faster at 8 tokens
        (text-cost-beauty-kernels.json).
        On the CPU, an encoder without attention dropout (sft.lm_dropout=0): eager up to EAGER_MAX_POSITIONS,
        SDPA above. CPU SDPA's fused backward is the slower one on short prompts: a MiniLM step without dropout
        took 0.69x SDPA's time eagerly at T=64, 0.81x at 128, 0.83x at 256, but 1.04x at 512, where SDPA also
        peaks at 0.59x the memory (attention-kernel-minilm-nodrop.json). Decoders (untimed) and GPUs keep the
        model's own kernel. "Eager" is `eager_kernel`: stages/lm/dropout.py's FAST_EAGER where the SFT draws its
        dropout masks with fewer random bits (the same eager attention)."""
        if self.attn_own in (None, "eager") or self.item_weight.device.type != "cpu" or not self.eager_training:
            return self.attn_own
        if attention_dropout(self.lm.config) > 0:
            return self.eager_kernel
        if not self.causal and (length is None or length <= EAGER_MAX_POSITIONS):
            return self.eager_kernel
        return self.attn_own

    def _attend(self, kernel: str | None) -> None:
        if kernel is not None and kernel != getattr(self.lm.config, "_attn_implementation", None):
            with quiet_transformers():       # it warns of its own internals' deprecations
                self.lm.set_attn_implementation(kernel)

    def with_text(self, ids: torch.Tensor, lengths: torch.Tensor) -> "PromptLM":
        """Show each item as its text tokens (ids (N+1, Tt) right-padded, lengths (N+1,)) before its embedding."""
        self.text_ids = ids.to(self.item_weight.device)
        self.text_len = lengths.to(self.item_weight.device)
        return self

    def context(self, max_prompt_tokens: int | None) -> int:
        """Positions the items of one prompt may take: the prompt budget less the prefix and suffix."""
        limit = max_prompt_tokens or getattr(self.lm.config, "max_position_embeddings", None) or 1 << 30
        return limit - self.template.prefix_len - self.template.suffix.shape[0]

    def item_cost(self) -> torch.Tensor:
        """(N+1,) prompt positions each item takes: its text tokens + 1 for its embedding."""
        n = self.item_weight.shape[0]
        return (self.text_len.cpu() if self.text_len is not None else torch.zeros(n, dtype=torch.int64)) + 1

    @property
    def head(self) -> nn.Module:
        return getattr(self, self.head_name)

    @property
    def shares_prefix(self) -> bool:
        """True when `hidden` runs the instruction prefix once per batch (decoder + share_prefix)."""
        return self.share_prefix and self.causal and self.template.prefix_len > 0

    def hidden(self, ids: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, PromptBatch]:
        """h^u (B, H) for left-aligned item ids (B, L) with counts (B,)."""
        dev = self.item_weight.device
        ids, counts = ids.to(dev), counts.to(dev)
        items = self.linear_proj(self.item_weight[ids])                          # (B, L, H)
        if self.text_ids is not None:                                            # item text before each embedding
            with torch.no_grad():                                                # the LM's token embeddings stay frozen
                text = self.lm.get_input_embeddings()(self.text_ids[ids])        # (B, L, Tt, H)
            items, counts = interleave_text(text, self.text_len[ids], items, counts)   # (B, C, H)
        batch = self.template.build(items, counts)
        if self.training:
            self._attend(self.training_kernel(batch.inputs_embeds.shape[1]))
        if self.shares_prefix:
            states, offset = self._after_shared_prefix(batch), batch.prefix_len  # (B, T-P, H)
        else:
            out = self.lm(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, **self._lm_kwargs)
            states, offset = (out[0] if isinstance(out, tuple) else out.last_hidden_state), 0   # (B, T, H)
        return states[torch.arange(states.shape[0], device=dev), batch.last_index - offset], batch

    def _after_shared_prefix(self, batch: PromptBatch) -> torch.Tensor:
        """Hidden states of positions P..T-1 (B, T-P, H), the prefix coming from one batch-1 pass."""
        b, t, _ = batch.inputs_embeds.shape
        p = batch.prefix_len
        pre = self.lm(inputs_embeds=batch.inputs_embeds[:1, :p], use_cache=True)   # (1, P, H); rows agree on 0..P-1
        cache = getattr(pre, self._cache_out)
        cache.batch_repeat_interleave(b)        # every layer's K/V (1, kv, P, d) -> (B, kv, P, d), autograd-tracked
        # Right padding: positions stay 0..T-1 for every row (as in the plain path, where Llama & co
        # derive them from the cache length, not the mask); the mask covers all T positions.
        pos = torch.arange(p, t, device=batch.inputs_embeds.device).unsqueeze(0).expand(b, -1)
        out = self.lm(inputs_embeds=batch.inputs_embeds[:, p:], attention_mask=batch.attention_mask,
                      position_ids=pos, use_cache=True, **{self._cache_kw: cache})
        return out.last_hidden_state

    def heads_state(self) -> dict[str, torch.Tensor]:
        out = {f"linear_proj.{k}": v for k, v in self.linear_proj.state_dict().items()}
        out.update({f"{self.head_name}.{k}": v for k, v in self.head.state_dict().items()})
        return {k: v.detach().cpu().contiguous().clone() for k, v in out.items()}


def build_prompt_lm(lm: nn.Module, tokenizer: Any, item_weight: torch.Tensor, k: int, head: nn.Module,
                    head_name: str, linear_proj: nn.Linear | None = None, instruction: str = INSTRUCTION,
                    share_prefix: bool = True) -> PromptLM:
    causal = not is_encoder(lm)
    hidden = lm.config.hidden_size
    template = PromptTemplate.from_model(lm, tokenizer, k, causal, instruction)
    proj = linear_proj if linear_proj is not None else nn.Linear(item_weight.shape[1], hidden)
    return PromptLM(lm, template, item_weight, proj, head, head_name, causal, share_prefix)


# -- adapter artifact -----------------------------------------------------------------------
def encode_json(obj: Any) -> torch.Tensor:
    data = json.dumps(obj, sort_keys=True).encode()
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def decode_json(t: torch.Tensor) -> Any:
    return json.loads(t.to(torch.uint8).cpu().numpy().tobytes().decode())


def peft_config_json(peft_model: Any, adapter_name: str = "default") -> dict[str, Any]:
    """adapter_config.json as peft writes it, target_modules sorted."""
    with tempfile.TemporaryDirectory() as tmp:
        peft_model.peft_config[adapter_name].save_pretrained(tmp)
        out = json.loads((Path(tmp) / "adapter_config.json").read_text())
    # peft keeps target_modules as a set: its JSON order follows the process's hash seed, and would
    # make the adapter artifact's digest differ between two runs of the same config.
    if isinstance(out.get("target_modules"), list):
        out["target_modules"] = sorted(out["target_modules"])
    return out


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
                    offline: bool = False, device: str = "cpu") -> tuple[nn.Module, Any, dict[str, Any]]:
    """(base model with the LoRA adapter applied (merged by default), tokenizer, adapter meta); the base
    is loaded as sft trained it (precision, 4 bits on `device`)."""
    from peft import PeftModel

    meta = adapter_meta(adapter)
    sft = meta["sft"]
    base, tok = load_lm(sft["model"], num_layers=sft.get("num_layers"), cache_dir=cache_dir, offline=offline,
                        precision=sft.get("precision", "fp32"), load_in_4bit=sft.get("load_in_4bit", False), device=device)
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
    bias = f"{head_name}.bias" in heads                                 # E4SRec's item head has none
    head = nn.Linear(head_w.shape[1], head_w.shape[0], bias=bias)
    proj.load_state_dict({"weight": proj_w, "bias": heads["linear_proj.bias"]})
    head.load_state_dict({"weight": head_w, **({"bias": heads[f"{head_name}.bias"]} if bias else {})})
    return proj, head, head_name
