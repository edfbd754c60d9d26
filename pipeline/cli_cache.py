"""`tslrec cache ...`: list, show, remove, verify and garbage-collect the content-addressed cache."""
from __future__ import annotations

import sys
from collections import Counter

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cache import Cache, CorruptObject, describe_owner
from pipeline.cache_gc import MIN_AGE_S, collect, held, remove, remove_free_locks
from pipeline.cli_common import emit, runtime
from pipeline.console import err
from schemas.common import ArtifactRef

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
    """List cached runs, newest first: key, stage, dataset, created, wall s, fields that differ from the
    defaults. A table on a terminal; tab-separated lines in a pipe.

    Example: tslrec cache ls --stage train | cut -f1
    """
    from pipeline.run_views import run_row

    runs = []
    for path, rec, problem in _cache().scan_runs():
        if problem is not None:
            err.print(f"unreadable record {path}: {problem}", markup=False)
        elif stage is None or rec.stage == stage:
            runs.append(rec)
    runs.sort(key=lambda r: (r.created, r.key), reverse=True)
    rows = [run_row(r) for r in runs]
    if as_json:
        emit({"runs": rows}, True)
    elif sys.stdout.isatty():
        table = Table("key", "stage", "dataset", "created (UTC)", "wall s", "changed from defaults")
        for column in table.columns[:5]:
            column.no_wrap = True
        for r in rows:
            table.add_row(r["key"][:12], r["stage"], r["dataset"], r["created"][:16].replace("T", " "),
                          f"{r['wall_s']:.1f}", "\n".join(r["changed"]))
        Console(highlight=False, markup=False, emoji=False).print(table)   # cells echo user text
    else:
        emit(None, False, plain="\n".join("\t".join([r["key"], r["stage"], r["dataset"], r["created"], f"{r['wall_s']:.3f}",
                                                      " ".join(r["changed"])]) for r in rows))


@cache_app.command("rm")
def rm_cmd(keys: list[str] = typer.Argument(..., help="Run keys or unique prefixes.", metavar="KEY...")) -> None:
    """Forget cached runs (their manifests); `tslrec cache gc` then frees objects no run uses. Prints the keys.

    Example: tslrec cache rm 3fa9c1 && tslrec cache gc
    """
    cache = _cache()
    records = []
    for key in keys:
        rec = cache.find_run(key)
        if rec is None:
            raise typer.BadParameter(f"no single run matches {key!r}", param_hint="KEY")
        records.append(rec)
    for rec in records:
        cache.run_path(rec.key).unlink(missing_ok=True)
    said = [f"removed {rec.stage} run {rec.key}" for rec in records]
    if not sys.stdout.isatty():   # on a terminal stdout says it; in a pipe stdout is the keys alone
        err.print("\n".join(said), markup=False)
    emit(None, False, plain="\n".join(said if sys.stdout.isatty() else [rec.key for rec in records]))


@cache_app.command("show")
def show_cmd(key: str = typer.Argument(..., help="Run key or a unique prefix of it.")) -> None:
    """Print a run's manifest as JSON.  Example: tslrec cache show 3fa9c1 | jq .result"""
    rec = _cache().find_run(key)
    if rec is None:
        raise typer.BadParameter(f"no single run matches {key!r}", param_hint="KEY")
    emit(rec.model_dump(mode="json"), True)


@cache_app.command("verify")
def verify_cmd(
    fix: bool = typer.Option(False, "--fix", help="Delete corrupt records, objects and checkpoints (they are recomputed on the next run)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Check every run record against its own digest (a record without one is corrupt), re-hash
    every object (those runs refer to and any other in the store) and every checkpoint of an
    unfinished run; exit 1 if any is unparsable, missing or corrupt.

    Example: tslrec cache verify --fix
    """
    cache = _cache()
    bad, referenced, records = [], {}, 0
    for path, rec, problem in cache.scan_runs():
        records += 1
        if problem is not None:
            bad.append({"run": path.stem, "stage": None, "digest": None, "error": str(problem)})
            err.print(f"corrupt record {path}: {problem}", markup=False)
            if fix:
                path.unlink(missing_ok=True)
            continue
        for ref in rec.outputs.values():
            referenced.setdefault(ref.digest, (rec, ref))
    for path in cache.objects():   # objects no record names yet are checked too
        if path != cache.object_path(path.stem):
            bad.append({"run": None, "stage": None, "digest": None, "error": f"{path} is not named by a digest"})
            err.print(f"corrupt {path}: not named by a digest", markup=False)
            continue
        referenced.setdefault(path.stem, (None, ArtifactRef(kind="unreferenced", digest=path.stem, path=str(path))))
    for digest, (rec, ref) in referenced.items():
        try:
            cache.get(ref)
        except CorruptObject as e:
            where = f"{rec.stage} {rec.key[:12]}" if rec is not None else "unreferenced"
            bad.append({"run": rec.key if rec else None, "stage": rec.stage if rec else None, "digest": digest, "error": str(e)})
            err.print(f"corrupt {where}: {e}", markup=False)
            if fix:
                cache.object_path(digest).unlink(missing_ok=True)
    checkpoints = verify_checkpoints(cache, bad, fix)
    checked = len(referenced)
    err.print(f"checked {records} records, {checked} objects and {checkpoints} checkpoints, {len(bad)} bad")
    emit({"checked": checked, "records": records, "checkpoints": checkpoints, "bad": bad}, as_json,
         plain=f"{checked}\t{len(bad)}")
    if bad and not fix:
        raise typer.Exit(1)


def verify_checkpoints(cache: Cache, bad: list[dict], fix: bool) -> int:
    """Check the resume points of interrupted (or running) runs against their digests; a bad one is
    what a rerun would refuse to resume from. Returns how many were checked."""
    from stages.core.checkpoint import check

    paths = sorted(cache.root.glob("checkpoints/*/*.pt"))
    for path in paths:
        problem = check(path)
        if problem is None:
            continue
        bad.append({"run": path.parent.name, "stage": None, "digest": None, "error": f"checkpoint {path.name} {problem}"})
        err.print(f"corrupt checkpoint {path}: {problem}", markup=False)
        if fix:
            path.unlink(missing_ok=True)
    return len(paths)


@cache_app.command("gc")
def gc_cmd(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be removed."),
    everything: bool = typer.Option(False, "--all", help="Remove the whole cache (records, objects, models, checkpoints) except what running commands hold."),
    checkpoints: bool = typer.Option(False, "--checkpoints", help="Also remove the resume points of interrupted runs."),
    min_age: float = typer.Option(MIN_AGE_S / 3600, "--min-age", min=0.0, help="Hours: spare temp files and unrecorded objects younger than this (a live run's)."),
) -> None:
    """Remove objects no run refers to, stale temp files, free lock files and finished checkpoints.
    Prints bytes freed. Safe next to running commands: it never touches what they hold (their locks,
    their checkpoints, files younger than --min-age), with --all too. Reports only what it removed.

    Example: tslrec cache gc --dry-run
    """
    cache = _cache()
    min_age_s = min_age * 3600
    doomed = collect(cache, min_age_s=min_age_s, checkpoints=checkpoints, everything=everything)
    done = doomed if dry_run else remove(cache, doomed)
    verb = "would remove" if dry_run else "removed"
    if everything:   # one line, not one per object
        counts = ", ".join(f"{why}: {n}" for why, n in sorted(Counter(d.why for d in done).items()))
        err.print(f"{verb} {len(done)} entries ({counts or 'none'})", markup=False)
    else:
        for d in done:
            err.print(f"{verb} {d.why}: {d.path} ({d.size} bytes)", markup=False)
    locks = remove_free_locks(cache, dry_run)
    for lock in sorted(cache.root.glob("runs/*/*.lock")):
        if held(cache, lock.stem):   # said, so that "safe next to running commands" can be seen
            err.print(f"kept run {lock.stem[:12]} (its lock and checkpoint): being computed by "
                      f"{describe_owner(lock.with_suffix('.owner'))}", markup=False)
    freed = sum(d.size for d in done)
    err.print(f"{'would free' if dry_run else 'freed'} {freed} bytes; {locks} free lock files")
    emit(None, False, plain=str(freed))
