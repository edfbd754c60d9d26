"""Issue 15, a tool people can pick up: offline Beauty, export, config discovery, fast start, cache views,
progress, packaging. Every test goes through the CLI (in-process `cli` fixture or a subprocess)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.synthetic import SyntheticConfig, write_synthetic

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "pretrain.trainer.epochs=2", "--set", "sft.model=tiny-bert", "--set", "group.k=4",
        "--set", "pretrain.backbone.dim=16", "--set", "train.trainer.epochs=2", "--set", "train.backbone.dim=16"]
BEAUTY_SHA = "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8"


def toy(data_dir: Path, name: str = "toy", users: int = 40) -> Path:
    return write_synthetic(SyntheticConfig(users=users, items=25), data_dir / name / f"{name}.txt")


def no_network(monkeypatch) -> None:
    import pipeline.datasets as ds

    def refuse(*a, **k):
        raise OSError("network is unreachable")
    monkeypatch.setattr(ds.urllib.request, "urlopen", refuse)


# -- 1. offline out of the box ---------------------------------------------------------------
def test_beauty_ships_with_the_package_and_runs_without_network(cli, dirs, monkeypatch):
    no_network(monkeypatch)
    r = cli("--offline", "data", "stats", "--dataset", "beauty", "--json")
    assert r.code == 0, r.err
    stats = json.loads(r.out)
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (22363, 12101, 198502)
    assert stats["source_sha256"] == BEAUTY_SHA                  # the unpacked file is the original, byte for byte
    assert (dirs[1] / "beauty" / "Beauty.txt").is_file()
    assert not [p for p in (dirs[1] / "beauty").iterdir() if p.name.startswith(".")]   # no temp left


def test_packaged_copy_is_sha256_checked(cli, dirs, monkeypatch):
    import pipeline.datasets as ds

    bad = ds.Source("beauty", ds.KNOWN["beauty"].local, ds.KNOWN["beauty"].fetch_to, ds.KNOWN["beauty"].url, "0" * 64)
    monkeypatch.setitem(ds.KNOWN, "beauty", bad)
    r = cli("run", "data", "--dataset", "beauty")
    assert r.code == 1 and "sha256 mismatch" in r.err and "packaged" in r.err
    assert not dirs[1].exists()                                  # nothing half-written, no empty folder


def test_failed_download_says_where_to_put_the_file(cli, dirs, monkeypatch):
    """(That a failed download leaves no folder behind is pipeline/datasets.py's fetch, tested with it.)"""
    no_network(monkeypatch)
    r = cli("run", "data", "--dataset", "ml-1m")
    assert r.code == 1
    assert "--data-dir" in r.err and "TSLREC_DATA_DIR" in r.err and "ml-1m/ml-1m.sasrec-pairs.txt" in r.err
    assert len(r.err.strip().splitlines()) == 1
    r = cli("--offline", "run", "data", "--dataset", "yelp")
    assert r.code == 1 and "TSLREC_DATA_DIR" in r.err and "yelp/Yelp.txt" in r.err


@pytest.mark.slow
def test_readme_first_command_on_beauty_offline_short(tmp_path):
    """The README's first command on a machine without TSLREC_DATA_DIR or network, epochs cut short."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSLREC_")}
    env.update(HOME=str(tmp_path), TSLREC_OFFLINE="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "tslrec.py"), "--threads", "1", "--no-progress", "run", "all", "--dataset", "beauty",
           "--set", "pretrain.trainer.epochs=1", "--set", "train.trainer.epochs=1", "--set", "sft.model=tiny-bert",
           "--set", "sft.max_items=5", "--json"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {row["variant"] for row in json.loads(r.stdout)["summary"]} == {"base", "ci", "tslrec"}


# -- 2. export ---------------------------------------------------------------------------------
def test_export_embeddings_cluster_map_and_a_peft_adapter(cli, dirs, tmp_path):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    from pipeline.cache import Cache
    from stages.lm.load import load_lm

    toy(dirs[1])
    aug = cli("--threads", "1", "run", "augment", "--dataset", "toy", *TINY, "--json")
    assert aug.code == 0, aug.err
    rec = json.loads(aug.out)
    cache = Cache(dirs[0])

    # enhanced embeddings from a --from record, with .npy copies
    r = cli("export", "--from", "-", "--out", str(tmp_path / "aug"), "--format", "npy", "--json", stdin=aug.out)
    assert r.code == 0, r.err
    out = tmp_path / "aug"
    got = load_file(out / "enhanced.safetensors")
    want = cache.get(cache.get_run(rec["key"]).outputs["enhanced"])
    assert torch.equal(got["embeddings"], want["embeddings"]) and torch.equal(got["category_probs"], want["category_probs"])
    import numpy as np
    assert np.array_equal(np.load(out / "enhanced.embeddings.npy"), want["embeddings"].numpy())
    readme = (out / "README.txt").read_text()
    assert rec["key"] in readme and "(26, 64)" in readme and "item_ids.tsv" in readme
    rows = (out / "item_ids.tsv").read_text().splitlines()
    assert rows[0] == "row\titem_id" and len(rows) == 26 and rows[1] == "1\t1"

    # the sft run by key prefix: a PEFT folder that loads onto the same base model
    sft_key = next(line.split("\t")[0] for line in cli("cache", "ls", "--stage", "sft").out.splitlines())
    r = cli("export", sft_key[:10], "--out", str(tmp_path / "sft"))
    assert r.code == 0, r.err
    assert r.out.strip() == str(tmp_path / "sft")
    folder = tmp_path / "sft" / "adapter"
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
    base, _ = load_lm("tiny-bert")
    peft_model = PeftModel.from_pretrained(base, folder)
    adapter = cache.get(cache.get_run(sft_key).outputs["adapter"])
    lora_a = next(k for k in adapter if "lora_A" in k)
    loaded = dict(peft_model.named_parameters())
    match = [v for k, v in loaded.items() if k.replace(".default", "").endswith(lora_a.split("base_model.", 1)[-1])]
    assert match and torch.equal(match[0].detach(), adapter[lora_a])
    heads = load_file(tmp_path / "sft" / "heads.safetensors")
    assert heads["linear_proj.weight"].shape == (64, 16) and heads["group_head.weight"].shape == (4, 64)

    # pretrain item embeddings and the group's cluster map
    for stage, file, tensor in (("pretrain", "item_embeddings.safetensors", "weight"), ("group", "groups.safetensors", "cluster_map")):
        key = cli("cache", "ls", "--stage", stage).out.split("\t")[0]
        assert cli("export", key, "-o", str(tmp_path / stage)).code == 0
        assert load_file(tmp_path / stage / file)[tensor].shape[0] == 26
    # an existing, non-empty folder is refused (exit 2) and left alone
    r = cli("export", sft_key, "-o", str(tmp_path / "sft"))
    assert r.code == 2 and "not an empty folder" in r.err
    assert cli("export", "--out", str(tmp_path / "x")).code == 2            # neither KEY nor --from


def test_export_writes_the_users_own_item_ids_when_the_data_run_has_a_map(cli, dirs, tmp_path):
    """A data run with `item_ids` / `user_ids` artifacts (the data stage's encoding: utf8 bytes + offsets,
    stages/core/idmap.py on the rel-input branch): export maps rows to the user's own ids."""
    import torch

    from pipeline.cache import Cache

    def encode(tokens):
        blobs = [t.encode() for t in tokens]
        offsets = torch.tensor([0, *[len(b) for b in blobs]], dtype=torch.int64).cumsum(0)
        return {"utf8": torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8).clone(), "offsets": offsets}

    toy(dirs[1])
    rec_json = cli("run", "data", "--dataset", "toy", "--json").out
    cache = Cache(dirs[0])
    rec = cache.get_run(json.loads(rec_json)["key"])
    items = [f"B00{i:04d}X" for i in range(1, 26)]
    users = [f"user-{chr(0x3b1 + i % 20)}{i}" for i in range(1, 41)]     # non-ASCII ids round-trip too
    outputs = {**rec.outputs, "item_ids": cache.put("item_ids", encode(items)), "user_ids": cache.put("user_ids", encode(users))}
    cache.put_run(rec.model_copy(update={"outputs": outputs}))
    r = cli("export", rec.key, "-o", str(tmp_path / "ids"))
    assert r.code == 0, r.err
    for file, tokens in (("item_ids.tsv", items), ("user_ids.tsv", users)):
        rows = [line.split("\t") for line in (tmp_path / "ids" / file).read_text().splitlines()[1:]]
        assert [tok for _, tok in rows] == tokens and [int(row) for row, _ in rows] == list(range(1, len(tokens) + 1))
    assert "user_ids.tsv" in (tmp_path / "ids" / "README.txt").read_text()


# -- 3. config discovery -------------------------------------------------------------------------
def test_config_lists_every_field_with_type_default_and_description(cli):
    from pipeline.config_help import fields

    r = cli("config", "--json")
    assert r.code == 0
    rows = json.loads(r.out)["fields"]
    assert len(rows) == len(fields()) and all(row["description"] and row["type"] for row in rows)
    patience = next(row for row in rows if row["name"] == "pretrain.trainer.patience")
    assert patience["default"] == 10 and patience["type"] == "int"
    text = cli("config", "sft").out
    assert "sft.lora_r: int | None = None" in text and "LoRA rank" in text and "pretrain." not in text
    assert cli("config", "nosuch").code == 2


def test_run_stage_help_shows_that_stages_fields(cli):
    r = cli("run", "pretrain", "--help")
    assert r.code == 0 and "pretrain.trainer.patience" in r.out and "group.k" not in r.out
    assert "group.k: int = 16" in cli("run", "-d", "toy", "group", "--help").out


def test_unknown_field_suggests_the_nearest_names(cli):
    r = cli("run", "data", "--set", "pretrain.trainer.lrr=0.1")
    assert r.code == 2 and "did you mean pretrain.trainer.lr" in r.err
    r = cli("run", "data", "--set", "pretrain.trainr.lr=0.1")
    assert r.code == 2 and "did you mean pretrain.trainer" in r.err


@pytest.mark.parametrize("args,needle", [
    (["--backbones", "sasrec,sasrek"], "--backbones sasrek"),
    (["--variants", "base,tslrek"], "--variants tslrek"),
    (["--set", "group.k=1"], "group.k"),
    (["--config", "missing.toml"], "--config missing.toml"),
])
def test_run_all_options_are_checked_before_any_stage_runs(cli, dirs, args, needle):
    toy(dirs[1])
    r = cli("run", "all", "--dataset", "toy", *args)
    assert r.code == 2 and needle in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not (dirs[0] / "runs").exists()                         # no stage ran


# -- 4. fast start ------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["--help"], ["--version"], ["cache", "path"], ["cache", "ls"], ["config"],
                                  ["config", "pretrain", "--json"]])
def test_quick_commands_never_import_torch_or_transformers(args, tmp_path):
    code = ("import sys, tslrec\n"
            f"sys.argv = ['tslrec', *{args!r}]\n"
            "try:\n    tslrec.main()\nexcept SystemExit as e:\n    rc = e.code\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'sklearn', 'scipy', 'matplotlib') if m in sys.modules)\n"
            "print(rc, heavy, file=sys.stderr)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TSLREC_CACHE_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.stderr.strip().splitlines()[-1] == "0 []", r.stderr


def test_new_verbs_have_help_with_an_example(cli):
    for verb in (["config"], ["export"], ["cache", "rm"]):
        r = cli(*verb, "--help")
        assert r.code == 0 and "Example" in r.out, verb


def test_version_and_shell_completion(cli):
    from importlib.metadata import version

    r = cli("--version")
    assert r.code == 0 and r.out.strip() == f"tslrec {version('tslrec')}"
    # Typer decides at import whether --show-completion takes the shell's name or detects the parent shell
    # (which fails when pytest's parent is no shell, e.g. under nohup): a fresh process that names it.
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    r = subprocess.run([sys.executable, str(ROOT / "tslrec.py"), "--show-completion", "bash"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "complete" in r.stdout


def test_shell_completion_offers_stage_names(tmp_path):
    def complete(words: str) -> list[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TSLREC_CACHE_DIR": str(tmp_path),
               "_TSLREC.PY_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
        r = subprocess.run([sys.executable, str(ROOT / "tslrec.py")], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert complete("tslrec.py run pr") == ["pretrain"]
    assert complete("tslrec.py run a") == ["augment", "all"]
    from pipeline.registry import ORDER

    assert complete("tslrec.py config ") == ORDER      # every stage, in the registry's order
    assert {"data", "text", "pretrain", "group", "sft", "augment", "encode", "train"} <= set(ORDER)


# -- 5. cache views -------------------------------------------------------------------------------
def test_cache_ls_newest_first_with_changed_fields_and_rm(cli, dirs, monkeypatch):
    toy(dirs[1])
    first = json.loads(cli("run", "data", "--dataset", "toy", "--json").out)
    second = json.loads(cli("run", "data", "--dataset", "toy", "--set", "data.min_length=4", "--json").out)
    from pipeline.cache import Cache
    cache = Cache(dirs[0])   # make the order unambiguous: created is second-resolution
    old = cache.get_run(first["key"])
    cache.put_run(old.model_copy(update={"created": "2000-01-01T00:00:00+00:00"}))

    runs = json.loads(cli("cache", "ls", "--json").out)["runs"]
    assert [r["key"] for r in runs] == [second["key"], first["key"]]
    assert runs[0]["changed"] == ["data.min_length=4"] and runs[1]["changed"] == []
    assert isinstance(runs[0]["wall_s"], float)

    piped = cli("cache", "ls")
    assert piped.out.splitlines()[0].split("\t")[:2] == [second["key"], "data"] and piped.err == ""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)       # a terminal: one table, on stdout only
    monkeypatch.setenv("COLUMNS", "160")
    tty = cli("cache", "ls")
    text = re.sub(r"\x1b\[[0-9;]*m", "", tty.out)
    assert second["key"][:12] in text and "data.min_length=4" in text and tty.err == ""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)

    r = cli("cache", "rm", second["key"][:8])
    assert r.code == 0 and r.out.strip() == second["key"]
    assert [line.split("\t")[0] for line in cli("cache", "ls").out.splitlines()] == [first["key"]]
    assert cli("cache", "rm", "ffffffff").code == 2


# -- 6. progress -----------------------------------------------------------------------------------
def test_early_stopping_progress_shows_epochs_since_best_not_an_eta(capsys):
    import torch
    from rich.progress import Progress

    from pipeline.progress import LineTracker, StopOrRemainingColumn
    from schemas.backbone import BackboneConfig, TrainerConfig
    from schemas.runtime import Runtime
    from stages.backbones.embedding import ItemEmbedding
    from stages.core.trainer import train_backbone
    from tests.conftest import cycle_dataset

    calls = []

    class Recorder(LineTracker):
        def advance(self, n=1, **fields):
            calls.append(fields)
            super().advance(n, **fields)

    rt = Runtime(tracker=lambda d, t: Recorder(d, t, every=0.0))
    seqs = cycle_dataset(users=30, n_items=20)
    train_backbone(BackboneConfig(dim=8), TrainerConfig(epochs=4, patience=2, batch_size=64), seqs,
                   lambda: ItemEmbedding(seqs.n_items, 8), rt, variant="base")
    assert calls and all(c["patience"] == 2 and 0 <= c["since_best"] < 2 for c in calls)
    lines = capsys.readouterr().err.splitlines()
    assert f"no gain {calls[0]['since_best']}/2 epochs" in lines[0] and "patience=" not in lines[0]

    column, progress = StopOrRemainingColumn(), Progress()
    tid = progress.add_task("x", total=200, stop="no gain 3/10 epochs")
    task = next(t for t in progress.tasks if t.id == tid)
    assert column.render(task).plain == "no gain 3/10 epochs"
    assert Runtime().track("x", 3).advance(1) is None               # no tracker handed in: no progress


def test_runtime_contract_does_not_import_the_cli_layer():
    code = "import sys, schemas.runtime as r; r.Runtime().track('x', 1); print(sorted(m for m in sys.modules if m.startswith('pipeline')))"
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stderr


def test_run_all_says_stage_n_of_m(cli, dirs):
    toy(dirs[1])
    r = cli("--threads", "1", "run", "all", "--dataset", "toy", "--variants", "base,ci", *TINY)
    assert r.code == 0, r.err
    # data, pretrain, group, then train base (the pretrain twin) and train ci
    assert "stage 1 of 5: data" in r.err and "stage 5 of 5: train ci sasrec seed 42" in r.err


def test_report_on_a_terminal_lists_its_files_once(cli, dirs, tmp_path, monkeypatch):
    toy(dirs[1])
    assert cli("--threads", "1", "run", "all", "--dataset", "toy", "--variants", "base", *TINY).code == 0
    piped = cli("report", "--out", str(tmp_path / "a"))
    assert piped.code == 0 and "wrote table2_md" in piped.err and piped.out.strip().endswith(".png")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    tty = cli("report", "--out", str(tmp_path / "b"))
    assert tty.code == 0 and "wrote table2_md" in tty.out and "wrote" not in tty.err


# -- 7. packaging ------------------------------------------------------------------------------------
def test_wheel_holds_exactly_our_top_level_names_beauty_and_the_license(tmp_path):
    """pipeline, schemas and stages install as top-level names (documented in the README): the wheel holds
    exactly these, plus tslrec.py, so a clash can only come from another distribution's same names."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:   # the test extra brings a new enough one
        pytest.skip(f"setuptools {setuptools.__version__} cannot build this pyproject offline (needs >= 77)")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                        "-w", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    wheel = zipfile.ZipFile(next(tmp_path.glob("tslrec-*.whl")))
    names = wheel.namelist()
    top = wheel.read(next(n for n in names if n.endswith("top_level.txt"))).decode().split()
    assert sorted(top) == ["pipeline", "schemas", "stages", "tslrec"]
    assert {n.split("/")[0] for n in names if not n.startswith("tslrec-")} == {"pipeline", "schemas", "stages", "tslrec.py"}
    assert "pipeline/packaged/Beauty.txt.gz" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    meta = wheel.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Provides-Extra: report" in meta and "Provides-Extra: gguf" in meta
    assert "transformers<6,>=5.17" in meta.replace(" ", "") or "transformers>=5.17,<6" in meta


def test_version_bounds_hold_the_versions_under_test():
    """Every dependency in pyproject (extras included) is bounded above and admits what this suite runs on."""
    import tomllib
    from importlib.metadata import version

    packaging = pytest.importorskip("packaging.requirements")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [packaging.Requirement(r) for r in project["dependencies"]]
    reqs += [packaging.Requirement(r) for extra in ("report", "gguf") for r in project["optional-dependencies"][extra]]
    for req in reqs:
        assert any(spec.operator in ("<", "<=", "~=", "==") for spec in req.specifier), f"{req} has no upper bound"
        installed = version(req.name).split("+")[0]
        assert req.specifier.contains(installed), f"{req.name} {installed} is outside {req.specifier}"


def test_readme_and_ci_install_with_the_same_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash .ci/install" in readme and "bash .ci/install" in ci
    assert "pip install" not in ci.replace("bash .ci/install", "")     # nothing CI installs on its own


def test_gguf_and_report_extras_fail_with_one_line_naming_the_extra(cli, dirs, monkeypatch, tmp_path):
    toy(dirs[1])
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "gguf", None)                   # not installed
    r = cli("--threads", "1", "run", "sft", "--dataset", "toy", *TINY, "--set", f"sft.model={model}")
    assert r.code == 1 and "pip install 'tslrec[gguf]'" in r.err
    assert r.err.strip().splitlines()[-1].startswith("error:")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = cli("report", "--out", str(tmp_path / "rep"))
    assert r.code == 1 and "pip install 'tslrec[report]'" in r.err
