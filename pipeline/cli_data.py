"""`tslrec data ...`: dataset statistics, download, import, synthetic generation."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from pipeline.cli_common import emit, runtime
from pipeline.console import err
from pipeline.datasets import KNOWN, Source, fetch, local_path
from pipeline.overrides import build_config

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

    record = Runner(runtime()).run("data", build_config(sets=[f"data.dataset={dataset}"]))
    r = record.result
    table = Table("dataset", "#users", "#items", "#interactions", "density", "avg length", title="Table 1")
    table.add_row(r["dataset"], f"{r['n_users']:,}", f"{r['n_items']:,}", f"{r['n_interactions']:,}",
                  f"{100 * r['density']:.2f}%", f"{r['avg_length']:.1f}")
    err.print(table)
    emit(r, as_json, plain="\t".join(str(r[k]) for k in ("dataset", "n_users", "n_items", "n_interactions", "avg_length")))


@data_app.command("fetch")
def fetch_cmd(
    name: str = typer.Argument(..., help=f"Dataset name: {', '.join(KNOWN)} (or any name with --url/--sha256)."),
    url: Optional[str] = typer.Option(None, "--url", help="Download from this URL instead."),
    sha256: Optional[str] = typer.Option(None, "--sha256", help="Expected sha256 (required with --url for new names)."),
    force: bool = typer.Option(False, "--force", help="Download even if the file is there."),
) -> None:
    """Download a dataset into the data dir and check its sha256. Prints the file's path.

    Example: tslrec --data-dir ./data data fetch beauty
    """
    rt = runtime()
    src = KNOWN.get(name)
    if src is None and not (url and sha256):
        raise typer.BadParameter(f"unknown dataset {name!r}; give --url and --sha256", param_hint="NAME")
    if src is None or url or sha256:
        base = src or Source(name, (f"{name}/{name}.txt",), f"{name}/{name}.txt", "", "")
        src = Source(name, base.local, base.fetch_to, url or base.url, sha256 or base.sha256)
    existing = local_path(name, rt.data_dir)
    if existing is not None and not force:
        err.print(f"already there: {existing}")
        emit(None, False, plain=str(existing))
        return
    path = fetch(src, rt.data_dir)
    err.print(f"fetched {name} -> {path}")
    emit(None, False, plain=str(path))


@data_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Interaction file to import."),
    name: str = typer.Option(..., "--name", help="Dataset name to use with --dataset."),
    fmt: str = typer.Option("auto", "--format", help="lines, pairs, inter or auto."),
) -> None:
    """Validate a file and copy it into the data dir as dataset NAME. Prints the new path.

    Example: tslrec data import ml-100k.inter --name ml-100k && tslrec run all --dataset ml-100k
    """
    from schemas.data import DataConfig, DataIn
    from stages import data

    data.run(DataConfig(dataset=name, format=fmt), DataIn(path=file), runtime())   # raises on bad input
    suffix = ".inter" if (fmt == "inter" or (fmt == "auto" and file.suffix == ".inter")) else ".txt"
    dest = runtime().data_dir / name / f"{name}{suffix}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(file, tmp)
    tmp.replace(dest)
    err.print(f"imported {file} as {name}")
    emit(None, False, plain=str(dest))


@data_app.command("synth")
def synth_cmd(
    name: str = typer.Option("synthetic", "--name", help="Dataset name."),
    users: int = typer.Option(300, "--users"), items: int = typer.Option(120, "--items"),
    categories: int = typer.Option(6, "--categories"), seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a seeded synthetic dataset with planted categories. Prints its path.

    Example: tslrec data synth --name toy --users 100 && tslrec run all --dataset toy
    """
    from stages.synthetic import SyntheticConfig, write_synthetic

    cfg = SyntheticConfig(users=users, items=items, categories=categories, seed=seed)
    path = write_synthetic(cfg, runtime().data_dir / name / f"{name}.txt")
    emit(None, False, plain=str(path))
