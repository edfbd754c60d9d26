"""Base models shared by every stage: frozen configs, artifact references, run manifests."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def json_digest(body: dict[str, Any]) -> str:
    """sha256 of a record's JSON object as written, without record_digest and cached.

    Readers check a stored record against the JSON its file holds, not against a re-dump through
    today's schema: a field added since (with its default) would change the re-dump and make every
    older record look tampered with."""
    body = {k: v for k, v in body.items() if k not in ("record_digest", "cached")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


# Seeds reach numpy's and scikit-learn's RandomState (k-means: 0 <= seed < 2**32) as well as torch's
# generators (wider): one range for every seed field, checked when the config is built, so a seed no
# consumer takes is refused (exit 2) before any stage runs instead of failing after pretrain.
SEED_MAX = 2**32 - 1


class Frozen(BaseModel):
    """Immutable, strict model: unknown fields are an error, never silently dropped, and every float
    is finite: `lr = inf` (TOML) or `--set ...lr=1e999` trained on lr=inf and recorded "lr": null with
    metrics of 0.0; a stage result with a NaN would be recorded as null the same way."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class TensorModel(BaseModel):
    """Frozen model that may hold torch tensors (stage inputs and outputs in memory)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


# An artifact in memory: tensor name -> tensor. On disk: one safetensors object.
Tensors = dict[str, Any]


class ArtifactRef(Frozen):
    kind: str = Field(description="What the artifact is, e.g. 'item_embeddings'.")
    digest: str = Field(description="sha256 over tensor names, dtypes, shapes and bytes.")
    path: str = Field(description="Absolute path of the safetensors object in the cache.")


class RunRecord(Frozen):
    """What a stage run prints with --json and what the cache stores as its manifest."""

    stage: str = Field(description="Stage name.")
    key: str = Field(pattern=r"^[0-9a-f]{64}$", description="Content-addressed cache key of this run (sha256, hex).")
    stage_version: int = Field(description="Stage's own version number (bumped on semantic change).")
    code_digest: str = Field(description="sha256 of the AST of the stage's modules.")
    config: dict[str, Any] = Field(description="The stage's own config, as hashed.")
    inputs: dict[str, str] = Field(description="Input name -> digest, as hashed.")
    env: dict[str, str] = Field(description="major.minor of python and key libraries, as hashed.")
    pipeline: dict[str, Any] = Field(description="Full pipeline config this run was resolved from.")
    outputs: dict[str, ArtifactRef] = Field(description="Artifacts written by the run.")
    result: dict[str, Any] = Field(description="The stage's typed result (metrics, timings).")
    wall_s: float = Field(description="Seconds the stage itself took when computed.")
    peak_rss_mb: float | None = Field(default=None, description="Peak resident memory (MiB) of the process while the stage ran (rank 0 under torchrun); None in records from before it was measured.")
    peak_rss_exact: bool | None = Field(default=None, description="True: the stage's own peak (Linux VmHWM reset before it); False: the process's peak so far, an upper bound.")
    peak_cuda_mb: float | None = Field(default=None, description="Peak CUDA memory allocated by tensors (MiB) while the stage ran; None off CUDA.")
    created: str = Field(description="UTC time the run was computed (ISO 8601).")
    cached: bool = Field(default=False, description="True when this invocation was a cache hit.")
    record_digest: str | None = Field(default=None, description="sha256 of this record's canonical JSON without record_digest and cached; checked whenever the record is read, and a record without one is never trusted (None only while a run is being recorded).")

    def content_digest(self) -> str:
        """sha256 of the canonical JSON of what the record says (not record_digest, not cached).

        Taken from the JSON text the record is written as, so it survives a write and a read
        (pydantic writes NaN as null, for example)."""
        return json_digest(json.loads(self.model_dump_json()))

    def digest_problem(self, body: dict[str, Any]) -> str | None:
        """Why this record, parsed from the JSON object `body`, cannot be trusted; None if it can.

        A missing digest is a problem too: deleting that line must not turn an edited record into
        one that is served (records without a digest, from before they carried one, are recomputed)."""
        if self.record_digest is None:
            return "carries no record_digest (edited, or written by a tslrec before records carried one)"
        if self.record_digest != json_digest(body):
            return "does not match its record_digest (edited or corrupted)"
        return None

    def sealed(self) -> "RunRecord":
        """This record with record_digest set to its content digest."""
        return self.model_copy(update={"record_digest": self.content_digest()})
