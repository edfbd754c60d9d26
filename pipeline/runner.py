"""The runner: the only caller of the cache. Resolves upstream stages, computes keys, runs stages.

A stage is a pure function run(cfg, inp, rt) -> out. The runner turns upstream manifests into
typed inputs, hashes {stage, version, code, config, input digests, env} into a key, and either
returns the cached manifest (after verifying its objects) or runs the stage and stores the result.
"""
from __future__ import annotations

import functools
import platform
import shutil
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape

from pipeline.cache import Cache, CorruptObject, CorruptRecord, cache_key, code_digest
from pipeline.console import debug, log
from pipeline.distributed import PARALLEL_STAGES
from pipeline.interrupt import is_signal
from pipeline.memory import track_peak
from pipeline.precision import resolve_precision, warn_emulated_bf16
from pipeline.registry import STAGES
from schemas.common import RunRecord
from schemas.pipeline import PipelineConfig
from schemas.runtime import Runtime
from stages.core.distributed import parallel
from stages.core.files import file_sha256

ENV_PACKAGES = ["torch", "transformers", "peft", "scikit-learn"]


class MissingUpstream(Exception):
    """An upstream result is not cached and the caller asked not to compute it."""


@functools.lru_cache(maxsize=None)
def _env_versions() -> tuple[tuple[str, str], ...]:
    out = {"python": ".".join(platform.python_version_tuple()[:2])}
    for pkg in ENV_PACKAGES:
        try:
            out[pkg] = ".".join(version(pkg).split(".")[:2])
        except PackageNotFoundError:
            out[pkg] = "absent"
    return tuple(out.items())


def env_versions() -> dict[str, str]:
    """major.minor of python and the libraries whose numerics feed the artifacts (read once)."""
    return dict(_env_versions())


class Runner:
    def __init__(self, rt: Runtime, *, compute_upstream: bool = True, force: bool = False):
        self.rt = rt
        self.cache = Cache(rt.cache_dir)
        self.compute_upstream = compute_upstream
        self.force = force            # recompute the requested stage even on a hit
        self._loaded: dict[str, dict[str, torch.Tensor]] = {}   # digest -> tensors, per process
        self._done: dict[str, RunRecord] = {}                   # key -> record, per process
        self._reported: set[str] = set()                        # keys whose corrupt record was reported
        self._warned_bf16 = False
        self.dist = parallel(rt)                                    # torchrun: rank 0 leads, the others follow

    # -- public ----------------------------------------------------------------------------
    def run(self, stage: str, cfg: PipelineConfig, *, top: bool = True) -> RunRecord:
        """The record of `stage` under `cfg`, from the cache or computed (see _as_requested). Under torchrun
        every rank calls this in the same order; rank 0 decides and tells the others (one broadcast per
        call; see pipeline/distributed.py)."""
        cfg = resolve_precision(cfg, self.rt)   # 'auto' -> what this device runs: the key says which
        if not self.dist.leader:
            return self._follow(stage, cfg)
        try:
            record = self._as_requested(self._run(stage, cfg, top=top), cfg)
        except BaseException as e:
            # An error is broadcast so the followers stop waiting; a signal is not: it reached every rank, and a
            # follower it left inside a training's all-reduce would never meet this broadcast (both ranks hung
            # in gloo, deaf to SIGTERM, after a Ctrl-C of `run all --jobs 2`)
            if self.dist.enabled and not getattr(e, "_followers_told", False) and not is_signal(e):
                e._followers_told = True    # the callers up the recursion must not broadcast it again
                self.dist.broadcast({"error": f"{type(e).__name__}: {e}"})
            raise
        self.dist.broadcast({"record": record})
        return record

    def _follow(self, stage: str, cfg: PipelineConfig) -> RunRecord:
        """A rank > 0: mirror rank 0's recursion, join the parallel stages' computations, take its records."""
        spec = STAGES[stage]
        for dep in spec.deps(cfg):
            self.run(dep, cfg, top=False)
        msg = self.dist.broadcast()
        if "compute" in msg:
            inputs = self.dist.broadcast()
            if self.rt.threads:
                torch.set_num_threads(self.rt.threads)
            # rank 0's folder: only rank 0 reads or writes it, this rank takes part in its save and restore
            rt = self.rt.model_copy(update={"checkpoint_dir": msg.get("checkpoint_dir")})
            spec.load().run(spec.config(cfg), spec.inputs(**inputs), rt)
            msg = self.dist.broadcast()
        if "error" in msg:
            raise SystemExit(1)   # rank 0 reports the error; torchrun shows its line
        return msg["record"]

    @staticmethod
    def _as_requested(record: RunRecord, cfg: PipelineConfig) -> RunRecord:
        """The record with THIS request's pipeline config, sealed: a hit's stored record has the
        config of whichever command first computed it, and `--from` must never continue from that
        one; the digest covers what is printed, so `--from` can check it."""
        pipeline = cfg.model_dump(mode="json")
        if record.pipeline != pipeline:
            record = record.model_copy(update={"pipeline": pipeline})
        return record.sealed()

    def is_cached(self, stage: str, cfg: PipelineConfig) -> bool:
        """Whether `stage` under `cfg` is a verified cache hit (its upstream runs are computed if they are not)."""
        cfg = resolve_precision(cfg, self.rt)
        key = self._plan(stage, cfg)[-1]
        return key in self._done or self._verified_hit(key) is not None

    def stage_inputs(self, stage: str, cfg: PipelineConfig) -> tuple[Any, Any]:
        """(typed config, typed inputs) that `stage` under `cfg` would run on (upstream from the cache, or
        computed), without running or storing it: for studies that call a stage's `run` under a variation its
        key does not see (benchmarks/dropout_draws.py)."""
        spec, _, stage_cfg, _, _, refs, path, _ = self._plan(stage, resolve_precision(cfg, self.rt))
        tensors = {name: self._load(ref) for name, ref in refs.items()}
        return stage_cfg, spec.inputs(**tensors, **({"path": path} if path is not None else {}))

    def _plan(self, stage: str, cfg: PipelineConfig) -> tuple:
        """(spec, module, stage_cfg, parts, input_digests, refs, path, key) of `stage` under `cfg`."""
        spec = STAGES[stage]
        upstream = [self.run(dep, cfg, top=False) for dep in spec.deps(cfg)]
        refs = self._input_refs(spec.inputs.model_fields, upstream)
        path = spec.locate(cfg, self.rt) if spec.locate is not None else None
        input_digests = {"raw": file_sha256(path)} if path is not None else {}
        input_digests.update({name: ref.digest for name, ref in refs.items()})
        module = spec.load()
        stage_cfg = spec.config(cfg)
        parts = {
            "stage": stage,
            "stage_version": module.VERSION,
            "code_digest": code_digest(module.modules(stage_cfg) if hasattr(module, "modules") else module.MODULES),
            "config": stage_cfg.model_dump(mode="json"),
            "input_digests": input_digests,
            "env": env_versions(),
        }
        if hasattr(module, "identity"):   # e.g. sft: the model's weights, not only its name
            parts["identity"] = module.identity(stage_cfg, self.rt)
        return spec, module, stage_cfg, parts, input_digests, refs, path, cache_key(parts)

    def _run(self, stage: str, cfg: PipelineConfig, *, top: bool) -> RunRecord:
        spec, module, stage_cfg, parts, input_digests, refs, path, key = self._plan(stage, cfg)
        if key in self._done:
            return self._done[key]
        hit = None if (self.force and top) else self._verified_hit(key)
        if hit is not None:
            log(f"[green]cache hit[/green]  {stage:<8} {key[:12]}")
            self._done[key] = hit
            return hit
        if not top and not self.compute_upstream:
            raise MissingUpstream(f"{stage} result {key[:12]} is not in the cache (run `tslrec run {stage}` first)")
        with self.cache.claim(key, label=stage) as waited:
            # Look again under the lock: another process may have computed it meanwhile (we waited
            # for it, or it finished between our first look and the claim).
            hit = self._verified_hit(key) if waited or not (self.force and top) else None
            if hit is not None:
                log(f"[green]cache hit[/green]  {stage:<8} {key[:12]} (computed by another process)")
                self._done[key] = hit
                return hit
            record = self._compute(stage, spec, module, stage_cfg, cfg, parts, key, input_digests, refs, path)
            shutil.rmtree(self.cache.checkpoint_dir(key), ignore_errors=True)   # recorded: the resume point has served
        self._done[key] = record
        return record

    def _compute(self, stage, spec, module, stage_cfg, cfg, parts, key, input_digests, refs, path) -> RunRecord:
        log(f"[yellow]computing[/yellow] {stage:<8} {key[:12]}")
        self._warned_bf16 = self._warned_bf16 or warn_emulated_bf16(stage_cfg, self.rt)
        tensors = {name: self._load(ref) for name, ref in refs.items()}
        ckpt = self.cache.checkpoint_dir(key)      # a killed run's resume point, if any (stages/core/checkpoint.py)
        self._check_resume_point(stage, key, ckpt)
        together = self.dist.enabled and stage in PARALLEL_STAGES
        if together:                                # the followers compute it with us, resume point included
            self.dist.broadcast({"compute": stage, "checkpoint_dir": ckpt})
            self.dist.broadcast(tensors)
        inp = spec.inputs(**tensors, **({"path": path} if path is not None else {}))
        # One process computes a stage the followers do not join: its checkpoint must not wait for them
        rt = self.rt.model_copy(update={"checkpoint_dir": ckpt, **({} if together else {"rank": 0, "world": 1})})
        if self.rt.threads:
            torch.set_num_threads(self.rt.threads)
        with track_peak(self.rt.device) as peak:
            t0 = time.perf_counter()
            out = module.run(stage_cfg, inp, rt)
            wall = time.perf_counter() - t0
        outputs = {}
        for kind, tensors in out.artifacts.items():
            outputs[kind] = self.cache.put(kind, tensors)
            self._loaded[outputs[kind].digest] = tensors
        record = RunRecord(
            stage=stage, key=key, stage_version=parts["stage_version"], code_digest=parts["code_digest"],
            config=parts["config"], inputs=input_digests, env=parts["env"],
            pipeline=cfg.model_dump(mode="json"), outputs=outputs,
            result=out.result.model_dump(mode="json"), wall_s=round(wall, 3),
            peak_rss_mb=peak.rss_mb, peak_rss_exact=peak.rss_exact, peak_cuda_mb=peak.cuda_mb,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        self.cache.put_run(record)
        log(f"[blue]stored[/blue]    {stage:<8} {key[:12]} in {wall:.1f}s, peak RSS {peak.rss_mb:.0f} MiB")
        return record

    def load(self, record: RunRecord, kind: str) -> dict[str, torch.Tensor]:
        return self._load(record.outputs[kind])

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    def _input_refs(fields: dict[str, Any], upstream: list[RunRecord]) -> dict[str, Any]:
        refs = {}
        for name in fields:
            for rec in reversed(upstream):   # nearest upstream wins
                if name in rec.outputs:
                    refs[name] = rec.outputs[name]
                    break
        return refs

    def _verified_hit(self, key: str) -> RunRecord | None:
        try:
            rec = self.cache.read_run(key)
        except CorruptRecord as e:
            self._report_corrupt(key, str(e))
            return None
        if rec is None:
            return None
        for ref in rec.outputs.values():
            try:
                self._load(ref)
            except CorruptObject as e:
                self._report_corrupt(key, f"{rec.stage} {key[:12]}: {e}")
                self.cache.discard(ref.digest)
                return None
        return rec.model_copy(update={"cached": True})

    def _report_corrupt(self, key: str, problem: str) -> None:
        """One line per bad run: the look under the lock finds the same record again (or the object
        the first look discarded missing) and must not say it twice."""
        if key not in self._reported:
            self._reported.add(key)
            log(f"[red]cache corrupt[/red] {escape(problem)}; recomputing")

    @staticmethod
    def _check_resume_point(stage: str, key: str, folder: Path) -> None:
        """Say whether the stage resumes. A checkpoint that fails its digest (a flipped byte, a truncated
        file) is reported and removed before the stage runs, so it restarts from epoch 1 instead of
        resuming from other weights, and the log says which of the two happens."""
        from stages.core import checkpoint

        good = 0
        for path in sorted(folder.glob("*.pt")):
            problem = checkpoint.check(path)
            if problem is None:
                good += 1
                continue
            log(f"[red]checkpoint corrupt[/red] {stage:<8} {key[:12]}: {escape(path.name)} {escape(problem)}; "
                f"removed, its training starts over from epoch 1")
            path.unlink(missing_ok=True)
        if good:
            log(f"[yellow]resuming[/yellow]  {stage:<8} {key[:12]} from its last completed epoch")

    def _load(self, ref: Any) -> dict[str, torch.Tensor]:
        if ref.digest not in self._loaded:
            debug(f"loading {ref.kind} {ref.digest[:12]}")
            self._loaded[ref.digest] = self.cache.get(ref)
        return self._loaded[ref.digest]
