"""`tslrec cache ...`: list, show, remove, verify and garbage-collect the content-addressed cache."""
from __future__ import annotations

import shutil
import sys

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cache import Cache, CorruptObject, holder_alive
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
    """List cached runs, newest first: key, stage, dataset, created, wall s, fields that differ from the
    defaults. A table on a terminal; tab-separated lines in a pipe.

    Example: tslrec cache ls --stage train | cut -f1
    """
    from pipeline.run_views import run_row

    runs = sorted((r for r in _cache().runs() if stage is None or r.stage == stage),
                  key=lambda r: (r.created, r.key), reverse=True)
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
        Console(highlight=False).print(table)
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
    everything: bool = typer.Option(False, "--all", help="Remove the whole cache (runs, objects, models)."),
) -> None:
    """Remove objects no run refers to, and leftover temp files. Prints bytes freed.

    Example: tslrec cache gc --dry-run
    """
    cache = _cache()
    if everything:
        if not dry_run and cache.root.exists():
            for sub in ("runs", "objects", "models"):
                shutil.rmtree(cache.root / sub, ignore_errors=True)
        emit(None, False, plain="all")
        return
    live = {ref.digest for rec in cache.runs() for ref in rec.outputs.values()}
    doomed = [p for p in cache.objects() if p.stem not in live]
    doomed += list(cache.root.glob("*/*/.tmp-*"))
    doomed += [p for p in cache.root.glob("runs/*/*.lock") if not holder_alive(p)]   # left by killed runs
    freed = sum(p.stat().st_size for p in doomed)
    for p in doomed:
        err.print(f"{'would remove' if dry_run else 'removed'} {p}")
        if not dry_run:
            p.unlink(missing_ok=True)
    emit(None, False, plain=str(freed))
