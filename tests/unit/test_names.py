"""One place per name: schemas/names.py defines the backbones, variants, fusions, item tables and
precisions; the config, the stage code's maps and the benchmarks take them from there."""
from __future__ import annotations

import ast
from importlib import import_module
from pathlib import Path
from typing import get_args

import pytest

from schemas import names
from schemas.pipeline import PipelineConfig

ROOT = Path(__file__).resolve().parents[2]


def test_the_config_offers_exactly_the_names():
    train = PipelineConfig.model_fields["train"].annotation.model_fields
    assert get_args(train["variant"].annotation) == names.VARIANTS
    assert get_args(train["fusion"].annotation) == names.FUSIONS
    assert get_args(train["ensemble_member"].annotation) == names.ENSEMBLE_MEMBERS
    assert get_args(train["source"].annotation) == names.SOURCES
    backbone = train["backbone"].annotation.model_fields
    assert get_args(backbone["name"].annotation) == names.BACKBONES


def test_every_fusion_name_has_its_module_and_no_module_lacks_a_name():
    from stages.backbones.fusion import EMBEDDINGS

    assert set(EMBEDDINGS) == set(names.ENSEMBLE_MEMBERS)
    assert set(names.FUSIONS) - set(names.EMBEDDING_FUSIONS) == {"ensemble"}      # stages/core/ensemble.py


def test_every_backbone_name_has_its_module():
    from stages.backbones import NAMES

    assert tuple(NAMES) == names.BACKBONES
    for name, cls in NAMES.items():
        assert hasattr(import_module(f"stages.backbones.{name}"), cls)


def test_every_source_has_its_stage_and_input():
    from pipeline.registry import SOURCE_STAGE, STAGES
    from schemas.train import SOURCE_INPUTS, TrainIn

    assert tuple(SOURCE_STAGE) == names.SOURCES
    assert set(names.SOURCES) - set(SOURCE_INPUTS) == {"random", "none"}          # made by train / no table
    for source, (field, _, stage) in SOURCE_INPUTS.items():
        assert field in TrainIn.model_fields and stage in STAGES and SOURCE_STAGE[source] == [stage]


def test_one_dtype_table_serves_every_precision():
    from stages.core.precision import DTYPES

    assert set(names.BACKBONE_PRECISIONS) <= set(names.LM_PRECISIONS) == set(DTYPES)


def string_lists(path: Path) -> list[tuple[int, set[str]]]:
    """(line, strings) of every list, tuple or set literal of two or more strings in `path`."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            strings = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            if len(strings) >= 2:
                out.append((node.lineno, strings))
    return out


# The results document runs without the project's dependencies (stdlib only, see its test): it keeps
# its own display order of the fusions that committed results files hold.
STANDALONE_PACKAGE = "benchmarks/results_doc/"


@pytest.mark.parametrize("kind", ["FUSIONS", "SOURCES", "BACKBONES"])
def test_no_other_module_spells_a_list_of_the_names(kind):
    wanted = set(getattr(names, kind))
    found = []
    for folder in ("schemas", "stages", "pipeline", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "schemas/names.py" or rel.startswith(STANDALONE_PACKAGE):
                continue
            found += [f"{rel}:{line}" for line, strings in string_lists(path) if len(strings & wanted) >= 3]
    assert found == [], f"lists of {kind} outside schemas/names.py: {found}"
