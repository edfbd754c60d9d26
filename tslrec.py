"""tslrec: LLM-enhanced item embeddings for sequential recommendation (TSLRec), as a CLI.

    tslrec run all --dataset beauty            # the whole pipeline, ends with a table
    tslrec run pretrain --dataset beauty --json | tslrec run group --from - --json
    tslrec data stats --dataset ml-1m --json
    tslrec cache ls
    tslrec config pretrain                     # every field: type, default, description
    tslrec export 3fa9c1 --out emb/            # a run's artifacts as files (safetensors, PEFT)

stdout carries results only (one JSON object with --json); progress, logs and tables go to
stderr. Exit codes: 0 ok, 1 runtime error (one line on stderr; --debug for a traceback), 2 usage, 130/143 on Ctrl-C/SIGTERM.
"""
from __future__ import annotations

import atexit
import gc
import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import ValidationError

from pipeline.cli_cache import cache_app
from pipeline.cli_common import (CONTEXT, StageHelpCommand, apply_globals, complete_run_stage, complete_stage, emit,
                                 package_version, runtime)
from pipeline.cli_export import export_cmd
from pipeline.cli_data import data_app
from pipeline.console import err, os_error_line
from pipeline.interrupt import Interrupted, handled_signals, unwound
from pipeline.overrides import PROFILES, ConfigError, build_config, deep_merge, format_validation
from pipeline.registry import ORDER, STAGES
from schemas.common import RunRecord
from schemas.names import VARIANTS
from schemas.pipeline import PipelineConfig

app = typer.Typer(
    help=__doc__.split("\n\n")[0] + "\n\nRun `tslrec COMMAND --help` for examples.",
    no_args_is_help=True, add_completion=True, rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data_app, name="data")
app.add_typer(cache_app, name="cache")


def _print_version(value: bool) -> None:
    if value:
        emit(None, False, plain=f"tslrec {package_version()}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", envvar="TSLREC_DATA_DIR", help="Dataset folder [env TSLREC_DATA_DIR; default <cache-dir>/datasets]."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", envvar="TSLREC_CACHE_DIR", help="Cache folder [env TSLREC_CACHE_DIR; default ~/.cache/tslrec]."),
    device: str = typer.Option("cpu", "--device", help="torch device: cpu, cuda, cuda:1."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: torch's choice)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars on stderr."),
    offline: bool = typer.Option(False, "--offline", envvar="TSLREC_OFFLINE", help="Never download datasets."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr."),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks and debug logs on stderr."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Global options go before the command: `tslrec --cache-dir /tmp/c run data`."""
    apply_globals(data_dir=data_dir, cache_dir=cache_dir, device=device, threads=threads,
                  progress=progress, offline=offline, quiet=quiet, debug=debug)


def stage_config(dataset: Optional[str], sets: list[str], config: Optional[Path], profile: Optional[str],
                 from_: Optional[str], stage: str = "all") -> tuple[Any, Optional[RunRecord]]:
    """The config `run STAGE` runs with: defaults < the --from record's own config (its stage and
    the stages it came from, see pipeline/upstream.py) < --profile < --config < --dataset/--set."""
    from pipeline.upstream import check_feeds, inherited_config, read_record

    base, upstream = {}, None
    if from_ is not None:
        upstream = read_record(from_)
        base = inherited_config(upstream)
        if dataset is not None and dataset != base["data"]["dataset"]:
            raise ConfigError(f"--dataset {dataset} conflicts with the upstream run's dataset {base['data']['dataset']}")
    if dataset is not None:
        sets = [f"data.dataset={dataset}", *sets]
    cfg = build_config(base=base, config_file=config, sets=sets, profile=profile)
    if upstream is not None:
        check_feeds(stage, cfg, upstream, base)
    return cfg, upstream


STAGE_HELP = "\n".join(f"  {n:<9} {s.doc}" for n, s in STAGES.items())


@app.command("run", cls=StageHelpCommand, help=f"""Run one stage (computing or reusing its upstream results), or `all`.

\b
Stages:
{STAGE_HELP}
  all       data -> pretrain -> group -> sft -> augment -> train (base, ci, tslrec), then a table

\b
Examples:
  tslrec run all --dataset beauty
  tslrec run pretrain --dataset beauty --set pretrain.backbone.name=gru4rec --json
  tslrec run pretrain --dataset beauty --json | tslrec run group --from - --json | jq .result
  tslrec run train --dataset ml-1m --set train.variant=tslrec --config exp.toml
  tslrec run pretrain --help     # ends with every field of the pretrain config""")
def run_cmd(
    stage: str = typer.Argument(..., help="Stage name or 'all'.", metavar="STAGE", autocompletion=complete_run_stage),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset name (default: beauty, or the upstream run's)."),
    sets: list[str] = typer.Option([], "--set", help="Override a config field: stage.field=value (repeatable)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with [stage] sections of overrides."),
    profile: Optional[str] = typer.Option(None, "--profile", help=f"Preset overrides: {', '.join(PROFILES)} ('paper': lr 1e-4, batch 1024, dim 256; 'text': FMLP-Rec with the LM's reading of item text, dual fusion)."),
    from_: Optional[str] = typer.Option(None, "--from", help="Upstream run record (JSON) to continue from; '-' reads stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
    no_compute_upstream: bool = typer.Option(False, "--cached-inputs", help="Refuse to compute missing upstream stages."),
    force: bool = typer.Option(False, "--force", help="Recompute this stage even if cached."),
    seeds: int = typer.Option(1, "--seeds", help="(all) seeds per train variant."),
    backbones: Optional[str] = typer.Option(None, "--backbones", help="(all) comma-separated train backbones (default: the pretrain backbone)."),
    variants: str = typer.Option(",".join(VARIANTS), "--variants", help="(all) comma-separated train variants."),
    reseed_chain: bool = typer.Option(False, "--reseed-chain", help="(all) seed s re-runs pretrain, group, sft and augment with seed s too (default: only train varies)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="(all) processes computing at once: the uncached train runs, in worker processes that split --threads, and the SFT's data-parallel ranks, one per thread (default: both on the CPU, up to the threads, when the pretrain took 30 s or more; N >= 2: both, up to N; 1: all in this process, one after another)."),
) -> None:
    from pipeline.runner import Runner

    if stage != "all" and stage not in STAGES:
        raise typer.BadParameter(f"unknown stage {stage!r}; choose from {', '.join(ORDER)}, all", param_hint="STAGE")
    from pipeline.distributed import join, shutdown

    cfg, upstream = stage_config(dataset, sets, config, profile, from_, stage)
    if stage == "all":
        check_all_options(cfg, _split(backbones), _split(variants))
    rt = join(runtime())   # under torchrun: this process's rank, world and device
    if stage == "all" and rt.world > 1:
        raise ConfigError("`run all` does not run under torchrun; run its stages one by one (README, Scaling out)")
    runner = Runner(rt, compute_upstream=not no_compute_upstream, force=force)
    if upstream is not None:
        from pipeline.upstream import check_reproduced
        check_reproduced(runner, cfg, upstream)
    if stage == "all":
        from pipeline.experiment import run_all
        summary = run_all(runner, cfg, seeds=seeds, backbones=_split(backbones), variants=_split(variants),
                          reseed_chain=reseed_chain, jobs=jobs)
        emit(summary, as_json, plain=summary.get("table_tsv", ""))
        return
    record = runner.run(stage, cfg)
    shutdown()
    if rt.rank != 0:   # rank 0 alone prints
        return
    emit(record.model_dump(mode="json"), as_json, plain=record.key)
    if not as_json:
        err.print_json(json.dumps(record.result))


@app.command("report", short_help="Tables 1-2 (markdown, CSV) and Figs. 4-5 (PNG) from experiments.")
def report_cmd(
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Folder for tables and figures."),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="Comma-separated datasets (default: all saved)."),
    experiments: list[Path] = typer.Option([], "--experiment", help="Experiment JSON(s) to use instead of the newest per dataset."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (written files) on stdout."),
) -> None:
    """Table 1, Table 2 (markdown, CSV), Fig. 4 and Fig. 5 PNGs from the saved `run all` experiments.

    \b
    Example:
      tslrec run all --dataset beauty --seeds 3 && tslrec report --out results/
    """
    from pipeline.extras import require

    require("matplotlib", "report", "tslrec report")
    from pipeline.report import write_report

    written = write_report(runtime().cache_dir, out, _split(datasets), experiments or None)
    files = written["files"]
    if sys.stdout.isatty() and not as_json:   # one listing on a terminal, not the same paths twice
        emit(None, False, plain="\n".join(f"wrote {name}: {path}" for name, path in files.items()))
        return
    for name, path in files.items():
        err.print(f"wrote {name}: {path}")
    emit(written, as_json, plain="\n".join(files.values()))


def check_all_options(cfg: PipelineConfig, backbones: Optional[list[str]], variants: Optional[list[str]]) -> None:
    """`run all --backbones/--variants`: each name is validated against the schema before any stage runs."""
    from pydantic import ValidationError

    tree = cfg.model_dump(mode="json")
    for flag, names, section in (("--backbones", backbones, lambda v: {"backbone": {"name": v}}),
                                 # the fusion and source are the tslrec runs' own (pipeline/experiment.py's train_configs)
                                 ("--variants", variants, lambda v: {"variant": v} if v == "tslrec" else
                                  {"variant": v, "fusion": "gate", "source": "enhanced"})):
        for name in names or []:
            try:
                PipelineConfig.model_validate(deep_merge(tree, {"train": section(name)}))
            except ValidationError as e:
                raise ConfigError(f"{flag} {name}: {format_validation(e).removeprefix('invalid config: ')}") from e


@app.command("config")
def config_cmd(
    stage: Optional[str] = typer.Argument(None, help="Only this stage's fields (data, pretrain, group, sft, augment, train).",
                                          autocompletion=complete_stage),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Every config field with its type, default and description (set one with --set FIELD=VALUE).

    \b
    Examples:
      tslrec config pretrain
      tslrec config --json | jq -r '.fields[].name'
    """
    from pipeline.config_help import format_fields, stage_fields

    if stage is not None and stage not in STAGES:
        raise typer.BadParameter(f"unknown stage {stage!r}; choose from {', '.join(ORDER)}", param_hint="STAGE")
    rows = stage_fields(stage)
    emit({"fields": rows}, as_json, plain=format_fields(rows))


app.command("export")(export_cmd)


def _split(s: Optional[str]) -> Optional[list[str]]:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def main() -> None:
    """Entry point: exit 0 ok, 1 runtime error (one line), 2 usage error, 128+n on signal n."""
    # The interpreter's last collection walks torch's and transformers' whole heap: 1.5 s of every
    # command that loaded them, measured. At exit nothing needs it (refcounting still frees), so the
    # heap is frozen then; atexit, not here, so that in-process callers (the tests) keep their GC.
    atexit.unregister(gc.freeze)   # once, however often main() runs in one process
    atexit.register(gc.freeze)
    with handled_signals():
        try:
            _main()
        except SystemExit as e:
            dist = sys.modules.get("pipeline.distributed")   # imported only by `run`
            if dist is not None and dist.joined():            # a torchrun rank: no teardown (see end_process)
                dist.end_process(e.code if isinstance(e.code, int) else int(e.code is not None))
            raise


def _main() -> None:
    try:
        rc = app(standalone_mode=False)   # typer returns Exit's code instead of raising it here
    except Interrupted as e:
        unwound()
        err.print("interrupted")
        sys.exit(128 + e.signum)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except typer.TyperException as e:   # typer's (vendored click) usage errors: exit 2
        e.show(file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    except ConfigError as e:
        err.print(f"error: {e}", markup=False)
        sys.exit(2)
    except ValidationError as e:   # not a config: e.g. a stage result holding a NaN (a diverged training)
        err.print(f"error: {format_validation(e, e.title)}", markup=False)
        sys.exit(1)
    except OSError as e:           # what and where: "no space left on device: /path", not "[Errno 28] ..."
        if CONTEXT.get("debug"):
            err.print_exception()
        err.print(f"error: {os_error_line(e)}", markup=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the one place that turns errors into exit 1
        if CONTEXT.get("debug"):
            err.print_exception()
        err.print(f"error: {type(e).__name__}: {e}" if not str(e) else f"error: {e}", markup=False)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
