"""`run STAGE --from RECORD`: continue from an upstream run record, checked.

A record is accepted only if it is a well-formed run record (its key a sha256, its record_digest
matching its content), of a stage that STAGE consumes, and if its config is its own. The config
STAGE runs with is the record's config for the record's stage and the stages it was computed from
(nothing else: what a record says about other stages is whatever the command that printed it had)
plus this command's own flags; flags that would change those upstream stages are refused, and the
runner must reproduce the record's key before STAGE runs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pipeline.overrides import ConfigError
from pipeline.registry import STAGES
from schemas.common import RunRecord
from schemas.pipeline import PipelineConfig


def read_record(source: str) -> RunRecord:
    """The record in file `source` ('-': stdin), refused unless it is a well-formed, unmodified run record."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        record = RunRecord.model_validate_json(text)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--from {source}: not a tslrec run record ({_first_line(e)})") from e
    if record.stage not in STAGES:
        raise ConfigError(f"--from {source}: unknown stage {record.stage!r}")
    problem = record.digest_problem(json.loads(text))
    if problem is not None:   # refused before anything runs: a record without a digest is no exception
        raise ConfigError(f"--from {source}: the record was modified after it was printed: it {problem}")
    return record


def _first_line(e: Exception) -> str:
    if hasattr(e, "errors"):           # pydantic: name the first bad field
        first = e.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'JSON'}: {first['msg']}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def lineage(stage: str, cfg: PipelineConfig) -> list[str]:
    """`stage` and every stage it is computed from under cfg, upstream first."""
    seen: list[str] = []

    def visit(s: str) -> None:
        for dep in STAGES[s].deps(cfg):
            visit(dep)
        if s not in seen:
            seen.append(s)

    visit(stage)
    return seen


def inherited_config(record: RunRecord) -> dict[str, Any]:
    """The sections of the record's pipeline that produced it: its own stage and its upstream stages.

    Refused if the record's pipeline is not the config that hashed to its key (its own stage's
    section must be the `config` it was keyed with)."""
    try:
        produced = PipelineConfig.model_validate(record.pipeline)
    except ValueError as e:
        raise ConfigError(f"--from: the record's pipeline config is invalid ({_first_line(e)})") from e
    if getattr(produced, record.stage).model_dump(mode="json") != record.config:
        raise ConfigError(f"--from: the record's pipeline config is not the one its {record.stage} run was keyed with")
    return {s: getattr(produced, s).model_dump(mode="json") for s in lineage(record.stage, produced)}


def check_feeds(stage: str, cfg: PipelineConfig, record: RunRecord, inherited: dict[str, Any]) -> None:
    """Refuse a record STAGE does not consume, and flags that change the stages the record came from."""
    if stage != "all":
        needs = STAGES[stage].deps(cfg)
        if record.stage not in needs:
            takes = f"a record of {', '.join(needs)}" if needs else "no upstream record"
            raise ConfigError(f"--from: a {record.stage} record cannot feed `run {stage}`, which takes {takes}")
    for section, values in inherited.items():
        if getattr(cfg, section).model_dump(mode="json") != values:
            raise ConfigError(f"--from: this command changes {section} settings of the upstream {record.stage} "
                              f"run; drop those overrides or run {section} again")


def check_reproduced(runner: Any, cfg: PipelineConfig, record: RunRecord) -> None:
    """The runner resolves the record's own stage under cfg to the record's key, or STAGE is not run."""
    got = runner.run(record.stage, cfg, top=False)
    if got.key != record.key:
        raise ConfigError(f"--from: the {record.stage} record {record.key[:12]} is not reproduced here "
                          f"(got {got.key[:12]}: code, data or environment changed since it was printed)")
