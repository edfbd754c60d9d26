"""Pipeline config from defaults, a TOML file and `--set stage.field=value` overrides.

Values are parsed strictly: a `--set` value is JSON for numeric, boolean and list fields and
plain text for text fields, and the whole config is then validated in pydantic's strict mode,
so `--set pretrain.trainer.lr=true` is refused instead of running with lr 1.0.
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError

from schemas.pipeline import PipelineConfig


class ConfigError(ValueError):
    """Bad config; the message names the field. A usage error (exit 2)."""


# `--profile NAME`: named presets, dotted overrides applied over the defaults (build_config says in what order).
PROFILES: dict[str, dict[str, Any]] = {
    # The paper's settings (section 5.1): lr 1e-4, batch 1024, d 256, for every backbone.
    "paper": {f"{stage}.{key}": value for stage in ("pretrain", "train")
              for key, value in {"trainer.lr": 1e-4, "trainer.batch_size": 1024, "backbone.dim": 256}.items()},
    # Item text read by the language model with no SFT (MiniLM by default, encode.model), fused into FMLP-Rec
    # by `dual`: the one text configuration above Base on validation NDCG@10 on Beauty, ML-1M and Yelp, 3 seeds
    # each (docs/item-text.md says what it does on test). `run all` shows it as the 'tslrec' rows.
    "text": {"train.backbone.name": "fmlprec", "train.variant": "tslrec", "train.fusion": "dual", "train.source": "text"},
}


def parse_value(text: str, annotation: Any = None) -> Any:
    """JSON where it parses (numbers, true/false, null, lists), else the raw string.

    A text field (str or a Literal of strings) takes the text itself (`data.dataset=123` is the
    name '123'), or the string a JSON string literal spells (`sft.model="minilm-l6"`)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    if _is_text(annotation) and not isinstance(value, str):
        return text
    return value


def _is_text(annotation: Any) -> bool:
    if annotation is str:
        return True
    return get_origin(annotation) is Literal and all(isinstance(a, str) for a in get_args(annotation))


def field_annotation(keys: list[str]) -> Any:
    """The type of PipelineConfig field `a.b.c`, or None if there is no such field."""
    model: Any = PipelineConfig
    for k in keys:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or k not in model.model_fields:
            return None
        model = model.model_fields[k].annotation
    return model


def parse_set(expr: str) -> tuple[list[str], Any]:
    if "=" not in expr:
        raise ConfigError(f"--set {expr!r}: expected stage.field=value")
    path, value = expr.split("=", 1)
    keys = [k.strip().replace("-", "_") for k in path.split(".")]
    if not all(keys):
        raise ConfigError(f"--set {expr!r}: empty field name")
    return keys, parse_value(value.strip(), field_annotation(keys))


def deep_set(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        node = tree.get(k)
        if not isinstance(node, dict):
            node = tree[k] = {} if node is None else _not_a_section(keys, k)
        tree = node
    tree[keys[-1]] = value


def _not_a_section(keys: list[str], k: str) -> dict:
    raise ConfigError(f"--set {'.'.join(keys)}: {k!r} is a value, not a section")


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_config(base: dict[str, Any] | None = None, config_file: Path | None = None,
                 sets: list[str] | None = None, profile: str | None = None) -> PipelineConfig:
    """defaults < base (e.g. an upstream run's config) < profile (PROFILES) < file < --set."""
    tree: dict[str, Any] = PipelineConfig().model_dump(mode="json")
    if base:
        tree = deep_merge(tree, base)
    if profile is not None and profile not in PROFILES:
        raise ConfigError(f"--profile {profile!r}: known profiles: {', '.join(PROFILES)}")
    for dotted, value in PROFILES.get(profile, {}).items():
        deep_set(tree, dotted.split("."), value)
    if config_file is not None:
        try:
            tree = deep_merge(tree, tomllib.loads(Path(config_file).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"--config {config_file}: {e}") from e
    for expr in sets or []:
        keys, value = parse_set(expr)
        deep_set(tree, keys, value)
    try:
        return PipelineConfig.model_validate(tree, strict=True)   # no bool -> float, no "1" -> 1
    except ValidationError as e:
        raise ConfigError(format_validation(e)) from e


def format_validation(e: ValidationError, what: str = "config") -> str:
    """One line for all of e's errors, each naming its field: 'invalid config: a.b: msg (got x)'."""
    lines = []
    for err in e.errors():
        field = ".".join(str(p) for p in err["loc"])
        got = f" (got {err['input']!r})" if err["type"] != "extra_forbidden" else ""
        msg = unknown_field_message(field) if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{field}: {msg}{got}")
    return f"invalid {what}: " + "; ".join(lines)


def unknown_field_message(dotted: str) -> str:
    """'unknown field (did you mean pretrain.trainer.lr?)': the nearest names, and where to list them."""
    from pipeline.config_help import nearest_fields

    near = nearest_fields(dotted)
    hint = f"did you mean {' or '.join(near)}?" if near else "`tslrec config` lists every field"
    return f"unknown field ({hint})"
