"""Config discovery: every field of the pipeline config (dotted name, type, default, description),
and the nearest field names for a typo. Reads the schemas only; imports no torch."""
from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel

from schemas.pipeline import PipelineConfig


def _type_name(annotation: Any) -> str:
    """'int', 'float | None', "'sasrec' | 'gru4rec'", 'list[str] | None' (no typing. prefixes)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def fields(model: type[BaseModel] = PipelineConfig, prefix: str = "") -> list[dict[str, Any]]:
    """Leaf fields of `model`, depth first, as {name, type, default, description}."""
    out: list[dict[str, Any]] = []
    for name, info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        if _is_section(info.annotation):
            out += fields(info.annotation, f"{dotted}.")
            continue
        default = info.get_default(call_default_factory=True)
        out.append({"name": dotted, "type": _type_name(info.annotation), "default": default,
                    "description": info.description or ""})
    return out


def stage_fields(stage: str | None) -> list[dict[str, Any]]:
    """Fields of one stage (`pretrain`), or of every stage when stage is None."""
    rows = fields()
    return rows if stage is None else [r for r in rows if r["name"].startswith(f"{stage}.")]


def nearest_fields(dotted: str, n: int = 3) -> list[str]:
    """Known field names closest to a mistyped one: 'pretrain.trainer.lrr' -> ['pretrain.trainer.lr']."""
    leaves = [r["name"] for r in fields()]
    sections = sorted({name.rsplit(".", i)[0] for name in leaves for i in range(1, name.count(".") + 1)})
    names = leaves + sections   # a typo may be in a section name: pretrain.trainr -> pretrain.trainer
    close = difflib.get_close_matches(dotted, names, n=n, cutoff=0.6)
    if close:
        return close
    # A typo in the last part only: compare the leaf names inside the same section.
    section, _, leaf = dotted.rpartition(".")
    siblings = [nm for nm in names if nm.rpartition(".")[0] == section]
    near = difflib.get_close_matches(leaf, [s.rpartition(".")[2] for s in siblings], n=n, cutoff=0.5)
    return [f"{section}.{x}" for x in near]


def format_fields(rows: list[dict[str, Any]]) -> str:
    """Plain text for a terminal or `--help`: one block per field."""
    lines = []
    for r in rows:
        lines.append(f"{r['name']}: {r['type']} = {r['default']!r}")
        lines.append(f"    {r['description']}")
    return "\n".join(lines)
