"""`tslrec data ...`: dataset statistics, download, import, synthetic generation."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.table import Table

from pipeline.cli_common import emit, runtime
from pipeline.console import err
from pipeline.datasets import (EXTENSIONS, KNOWN, DatasetUsageError, Source, candidates, check_https, checked_name,
                               fetch, install, local_path, under_data_dir)
from pipeline.overrides import ConfigError, build_config
from stages.core.files import file_sha256

data_app = typer.Typer(help="Datasets: statistics, download, import, synthetic data.", no_args_is_help=True)


@data_app.command("stats")
def stats(
    dataset: str = typer.Option("beauty", "--dataset", "-d", help="Dataset name."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Users, items, interactions, average length and density (Table 1).

    Example: tslrec data stats --dataset ml-1m --json
    """
    from pipeline.runner import Runner

    runner, cfg = Runner(runtime()), build_config(sets=[f"data.dataset={dataset}"])
    r = dict(runner.run("data", cfg).result)
    text = item_text_counts(runner, cfg)
    r.update(text)
    table = Table("dataset", "#users", "#items", "#interactions", "density", "avg length", "items with text", title="Table 1")
    table.add_row(r["dataset"], f"{r['n_users']:,}", f"{r['n_items']:,}", f"{r['n_interactions']:,}",
                  f"{100 * r['density']:.2f}%", f"{r['avg_length']:.1f}",
                  f"{text['items_with_text']:,} ({', '.join(text['text_columns'])})" if text else "no item text")
    err.print(table)
    emit(r, as_json, plain="\t".join(str(r[k]) for k in ("dataset", "n_users", "n_items", "n_interactions", "avg_length")))


def item_text_counts(runner, cfg) -> dict:
    """Items with and without text (the `text` stage's counts), or {} when the dataset has no item text."""
    from pipeline.datasets import DatasetError

    try:
        t = runner.run("text", cfg).result
    except DatasetError:
        return {}
    return {"text_columns": t["columns"], "items_with_text": t["n_with_text"], "items_without_text": t["n_missing"]}


@data_app.command("fetch")
def fetch_cmd(
    name: str = typer.Argument(..., help=f"Dataset name: {', '.join(KNOWN)} (or a new name with --url/--file and --sha256)."),
    url: Optional[str] = typer.Option(None, "--url", help="Download from this https:// URL instead (a known dataset keeps its pinned sha256)."),
    file: Optional[Path] = typer.Option(None, "--file", exists=True, dir_okay=False, help="Install from this local file instead of downloading."),
    sha256: Optional[str] = typer.Option(None, "--sha256", help="Expected sha256 (required for new names; cannot replace a known dataset's pinned hash)."),
    force: bool = typer.Option(False, "--force", help="Fetch again and replace the dataset's file(s)."),
) -> None:
    """Download a dataset (https only) into the data dir, check its sha256 and that it parses as a
    dataset, then keep it. Prints the file's path.

    \b
    Examples:
      tslrec --data-dir ./data data fetch beauty
      tslrec data fetch beauty --file ~/Downloads/Beauty.txt
    """
    rt = runtime()
    if file is not None:
        regular_file(file, "--file")
    src = fetch_source(checked_name(name), url, sha256, from_file=file)
    existing = local_path(name, rt.data_dir)
    if existing is not None and not force:
        if name in KNOWN or file_sha256(existing) == src.sha256:
            err.print(f"already there: {existing}")
            emit(None, False, plain=str(existing))
            return
        raise DatasetUsageError(f"dataset {name!r} already exists at {existing} with other content; "
                                f"pass --force to replace it")
    path = fetch(src, rt.data_dir, from_file=file, replace=force)
    err.print(f"fetched {name} -> {path}")
    emit(None, False, plain=str(path))


def fetch_source(name: str, url: Optional[str], sha256: Optional[str], *, from_file: Optional[Path]) -> Source:
    """The Source to fetch: a known one (its pinned hash, maybe another https URL) or a new one."""
    if url is not None and from_file is not None:
        raise DatasetUsageError("give --url or --file, not both")
    if url is not None:
        check_https(url)
    known = KNOWN.get(name)
    if known is not None:
        if sha256 is not None and sha256.lower() != known.sha256:
            raise DatasetUsageError(f"{name}'s sha256 is pinned ({known.sha256}); --sha256 cannot replace it")
        return Source(name, known.local, known.fetch_to, url or known.url, known.sha256)
    if not sha256 or (url is None and from_file is None):
        raise DatasetUsageError(f"unknown dataset {name!r}: give --url (https) or --file, and --sha256")
    suffix = from_file.suffix if from_file is not None and from_file.suffix in EXTENSIONS else ".txt"
    rel = f"{name}/{name}{suffix}"
    return Source(name, (rel,), rel, url or "", sha256.lower())


@data_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Interaction file to import."),
    name: str = typer.Option(..., "--name", help="Dataset name to use with --dataset (letters, digits, '-', '_', '.' not first)."),
    fmt: str = typer.Option("auto", "--format", help="lines, pairs, inter or auto. An .inter file without a timestamp column keeps each user's rows in file order."),
    force: bool = typer.Option(False, "--force", help="Replace an existing dataset of that name."),
    items: Optional[Path] = typer.Option(None, "--items", dir_okay=False, help="Item text to keep beside it: a UTF-8 TSV with a header 'item_id<TAB>title[<TAB>more columns]', in the file's own item ids (for sft.item_text and train.source=text)."),
) -> None:
    """Validate a file and copy it into the data dir as dataset NAME. Prints the new path.

    Users' and items' own ids (any size; any token in .inter files) are mapped to contiguous
    internal ids; the maps are kept with the `data` stage's results. With --items, the item text is
    checked against the same ids (unknown or duplicate ids, wrong column counts and non-UTF-8 bytes
    are errors naming the line; items without a row get empty text) and kept as <name>/<name>.items.tsv.

    Example: tslrec data import ml-100k.inter --name ml-100k --items ml-100k.items.tsv && tslrec run all --dataset ml-100k
    """
    rt = runtime()
    checked_name(name)
    regular_file(file, "FILE")
    if name in KNOWN:
        raise DatasetUsageError(f"{name!r} is a known dataset; get it with `tslrec data fetch {name}` or pick another name")
    if fmt not in ("auto", "lines", "pairs", "inter"):
        raise typer.BadParameter(f"{fmt!r}: choose lines, pairs, inter or auto", param_hint="--format")
    suffix = ".inter" if (fmt == "inter" or (fmt == "auto" and file.suffix == ".inter")) else ".txt"
    dest = under_data_dir(rt.data_dir, f"{name}/{name}{suffix}")
    others = refuse_overwrite(name, rt.data_dir, force)
    items_dest = under_data_dir(rt.data_dir, f"{name}/{name}.items.tsv")
    if items is not None:    # checked before anything is installed: a bad text file leaves no half-imported dataset
        from pipeline.datasets import install_items

        with tempfile.TemporaryDirectory() as tmp:
            install_items(Path(tmp) / "items.tsv", items, file, name, fmt)
    install(dest, lambda tmp: shutil.copyfile(file, tmp), name, str(file), fmt=fmt, replaces=others)
    if items is not None:
        install_items(items_dest, items, dest, name, fmt)
    elif force:
        items_dest.unlink(missing_ok=True)     # the old text belongs to the replaced dataset's ids
    err.print(f"imported {file} as {name}" + (f" with item text {items}" if items is not None else ""))
    emit(None, False, plain=str(dest))


def regular_file(path: Path, what: str) -> None:
    """Only regular files (or links to one) are copied in: `data import /dev/zero` copied until the
    disk was full, and a pipe would block or copy whatever its writer sends."""
    if not path.is_file():
        raise DatasetUsageError(f"{what} {path}: not a regular file (a device, pipe or socket); give a file")


def refuse_overwrite(name: str, data_dir: Path, force: bool) -> list[Path]:
    """The existing files of dataset `name` (to replace with --force); without --force, an error."""
    existing = [p for p in candidates(name, data_dir) if p.is_file()]
    if existing and not force:
        raise DatasetUsageError(f"dataset {name!r} already exists at {existing[0]}; pass --force to replace it")
    return existing


@data_app.command("synth")
def synth_cmd(
    name: str = typer.Option("synthetic", "--name", help="Dataset name."),
    users: int = typer.Option(300, "--users"), items: int = typer.Option(120, "--items"),
    categories: int = typer.Option(6, "--categories"), seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Replace an existing dataset of that name."),
) -> None:
    """Write a seeded synthetic dataset with planted categories. Prints its path.

    Example: tslrec data synth --name toy --users 100 && tslrec run all --dataset toy
    """
    from pipeline.synthetic import SyntheticConfig, write_synthetic

    rt = runtime()
    checked_name(name)
    if name in KNOWN:
        raise DatasetUsageError(f"{name!r} is a known dataset; pick another name")
    try:   # e.g. a --seed the generator cannot take: one line, exit 2, nothing written
        cfg = SyntheticConfig(users=users, items=items, categories=categories, seed=seed)
    except ValidationError as e:
        raise ConfigError("; ".join(f"--{x['loc'][0]} {x['input']}: {x['msg']}" for x in e.errors())) from e
    dest = under_data_dir(rt.data_dir, f"{name}/{name}.txt")
    others = refuse_overwrite(name, rt.data_dir, force)
    path = install(dest, lambda tmp: write_synthetic(cfg, tmp), name, f"synthetic {name}", replaces=others)
    emit(None, False, plain=str(path))
