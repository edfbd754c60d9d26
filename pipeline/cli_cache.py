"""`tslrec cache ...`: list, show, verify and garbage-collect the content-addressed cache."""
from __future__ import annotations

import shutil

import typer
from rich.table import Table

from pipeline.cache import Cache, CorruptObject
from pipeline.cache_gc import MIN_AGE_S, collect, remove, remove_free_locks
from pipeline.cli_common import emit, runtime
from pipeline.console import err

cache_app = typer.Typer(help="The content-addressed cache: runs and safetensors objects.", no_args_is_help=True)


def _cache() -> Cache:
    return Cache(runtime().cache_dir)


@cache_app.command("path")
def path_cmd() -> None:
    """Print the cache dir.  Example: du -sh "$(tslrec cache path)" """
    emit(None, False, plain=str(runtime().cache_dir))


@cache_app.command("ls")
def ls_cmd(
    stage: str = typer.Option(None, "--stage", help="Only runs of this stage."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """List cached runs (stdout: key, stage, dataset, created; one per line).

    Example: tslrec cache ls --stage train | cut -f1
    """
    runs = [r for r in _cache().runs() if stage is None or r.stage == stage]
    rows = [(r.key, r.stage, r.pipeline["data"]["dataset"], r.created, f"{r.wall_s:.1f}") for r in runs]
    table = Table("key", "stage", "dataset", "created", "wall s")
    for row in rows:
        table.add_row(row[0][:12], *row[1:])
    err.print(table)
    if as_json:
        emit({"runs": [dict(zip(["key", "stage", "dataset", "created", "wall_s"], row)) for row in rows]}, True)
    else:
        emit(None, False, plain="\n".join("\t".join(row[:4]) for row in rows))


@cache_app.command("show")
def show_cmd(key: str = typer.Argument(..., help="Run key or a unique prefix of it.")) -> None:
    """Print a run's manifest as JSON.  Example: tslrec cache show 3fa9c1 | jq .result"""
    rec = _cache().find_run(key)
    if rec is None:
        raise typer.BadParameter(f"no single run matches {key!r}", param_hint="KEY")
    emit(rec.model_dump(mode="json"), True)


@cache_app.command("verify")
def verify_cmd(
    fix: bool = typer.Option(False, "--fix", help="Delete corrupt objects (they are recomputed on the next run)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Re-hash every object referenced by a run; exit 1 if any is missing or corrupt.

    Example: tslrec cache verify --fix
    """
    cache = _cache()
    bad, checked = [], 0
    for rec in cache.runs():
        for ref in rec.outputs.values():
            checked += 1
            try:
                cache.get(ref)
            except CorruptObject as e:
                bad.append({"run": rec.key, "stage": rec.stage, "digest": ref.digest, "error": str(e)})
                err.print(f"[red]corrupt[/red] {rec.stage} {rec.key[:12]}: {e}")
                if fix:
                    cache.object_path(ref.digest).unlink(missing_ok=True)
    err.print(f"checked {checked} objects, {len(bad)} bad")
    emit({"checked": checked, "bad": bad}, as_json, plain=f"{checked}\t{len(bad)}")
    if bad and not fix:
        raise typer.Exit(1)


@cache_app.command("gc")
def gc_cmd(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be removed."),
    everything: bool = typer.Option(False, "--all", help="Remove the whole cache (runs, objects, models, checkpoints)."),
    checkpoints: bool = typer.Option(False, "--checkpoints", help="Also remove the resume points of interrupted runs."),
    min_age: float = typer.Option(MIN_AGE_S / 3600, "--min-age", min=0.0, help="Hours: spare temp files and unrecorded objects younger than this (a live run's)."),
) -> None:
    """Remove objects no run refers to, stale temp files, free lock files and finished checkpoints.
    Prints bytes freed. Safe next to running commands: it never touches what they hold.

    Example: tslrec cache gc --dry-run
    """
    cache = _cache()
    if everything:
        if not dry_run and cache.root.exists():
            for sub in ("runs", "objects", "models", "checkpoints"):
                shutil.rmtree(cache.root / sub, ignore_errors=True)
        emit(None, False, plain="all")
        return
    min_age_s = min_age * 3600
    doomed = collect(cache, min_age_s=min_age_s, checkpoints=checkpoints)
    for d in doomed:
        err.print(f"{'would remove' if dry_run else 'removing'} {d.why}: {d.path} ({d.size} bytes)", markup=False)
    freed = sum(d.size for d in doomed) if dry_run else remove(cache, doomed, min_age_s)
    locks = remove_free_locks(cache, dry_run)
    err.print(f"{'would free' if dry_run else 'freed'} {freed} bytes; {locks} free lock files")
    emit(None, False, plain=str(freed))
