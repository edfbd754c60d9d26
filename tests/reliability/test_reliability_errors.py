"""Issue 28, numbers, errors and inputs: non-finite and out-of-range numbers (3), errors a user can act
on (4), odd inputs (6). Each test failed on the code before its fix. Records, checkpoints and gc (1, 2,
5) are in test_reliability_trust.py."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import toy

SEED_MAX = 2**32 - 1          # what scikit-learn's KMeans takes as random_state (torch takes more)

ONE_EPOCH = ("--set", "pretrain.trainer.epochs=1", "--set", "pretrain.backbone.dim=8")
ROOT = Path(__file__).resolve().parents[2]


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


# -- 3. every float finite, every seed in the range its consumers take ----------------------------

@pytest.mark.parametrize("source, field", [
    ("--set pretrain.trainer.lr=1e999", "pretrain.trainer.lr"),
    ("--set pretrain.trainer.weight_decay=1e999", "pretrain.trainer.weight_decay"),
    ("--set sft.lr=NaN", "sft.lr"),
    ("[pretrain.trainer]\nlr = inf", "pretrain.trainer.lr"),
    ("[pretrain.trainer]\nweight_decay = nan", "pretrain.trainer.weight_decay"),
])
def test_a_non_finite_number_is_refused_naming_its_field(cli, dirs, tmp_path, source, field):
    toy(dirs[1])
    if source.startswith("--set"):
        args = source.split(" ", 1)
    else:
        (tmp_path / "c.toml").write_text(source + "\n")
        args = ["--config", str(tmp_path / "c.toml")]
    r = cli("run", "pretrain", "-d", "toy", *ONE_EPOCH, *args)
    assert r.code == 2 and f"{field}: Input should be a finite number" in r.err and one_line(r.err), r.err
    assert not (dirs[0] / "runs").exists()                          # nothing ran


@pytest.mark.parametrize("setting, field", [
    ("pretrain.trainer.seed=99999999999999999999", "pretrain.trainer.seed"),
    ("group.seed=-1", "group.seed"),
    (f"group.seed={SEED_MAX + 1}", "group.seed"),
    ("train.trainer.seed=-3", "train.trainer.seed"),
    ("sft.seed=-1", "sft.seed"),
])
def test_a_seed_no_consumer_takes_is_refused_before_any_stage_runs(cli, dirs, setting, field):
    toy(dirs[1])
    r = cli("run", "group", "-d", "toy", *ONE_EPOCH, "--set", "group.k=3", "--set", setting)
    assert r.code == 2 and f"{field}: Input should be" in r.err and one_line(r.err), r.err
    assert not (dirs[0] / "runs").exists()


def test_the_largest_seed_is_taken_by_every_consumer(cli, dirs):
    toy(dirs[1])
    r = cli("run", "group", "-d", "toy", *ONE_EPOCH, "--set", "group.k=3", "--set", f"group.seed={SEED_MAX}",
            "--set", f"pretrain.trainer.seed={SEED_MAX}", "--json")
    assert r.code == 0, r.err
    r = cli("run", "all", "-d", "toy", *ONE_EPOCH, "--set", f"train.trainer.seed={SEED_MAX}", "--seeds", "2")
    assert r.code == 2 and "--seeds 2" in r.err and str(SEED_MAX + 1) in r.err and one_line(r.err), r.err
    r = cli("data", "synth", "--name", "big", "--seed", "99999999999999999999")
    assert r.code == 2 and "--seed" in r.err and one_line(r.err), r.err


def test_a_stage_result_holding_a_nan_is_refused_in_one_line_not_recorded_as_null(cli, dirs, monkeypatch):
    import stages.group

    toy(dirs[1])
    monkeypatch.setattr(stages.group, "mean_entropy", lambda pref: float("nan"))
    r = cli("run", "group", "-d", "toy", *ONE_EPOCH, "--set", "group.k=3")
    assert r.code == 1 and "mean_entropy: Input should be a finite number (got nan)" in r.err, r.err
    assert r.err.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in r.err
    stages_run = {json.loads(p.read_text())["stage"] for p in (dirs[0] / "runs").glob("*/*.json")}
    assert stages_run == {"data", "pretrain"}


# -- 4. errors a user can act on -------------------------------------------------------------------

def tiny_filesystem(folder: Path) -> list[str]:
    """argv prefix that runs a command with a 4 KiB tmpfs mounted on `folder` (a private mount in a
    user namespace: no root needed, nothing outside the command sees it); skips where that is refused."""
    prefix = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c"]
    probe = f"mount -t tmpfs -o size=4k tmpfs '{folder}'"
    if shutil.which("unshare") is None or subprocess.run([*prefix, probe], capture_output=True).returncode != 0:
        pytest.skip("needs unshare with user namespaces to fill a small filesystem")
    return [*prefix, probe + ' && exec "$0" "$@"']


def test_a_full_disk_during_a_checkpoint_write_says_so_and_where(tmp_path):
    cache, data = tmp_path / "cache", tmp_path / "data"
    toy(data)
    (cache / "checkpoints").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([*tiny_filesystem(cache / "checkpoints"), sys.executable, "-c", "import tslrec; tslrec.main()",
                        "--threads", "1", "--no-progress", "--cache-dir", str(cache), "--data-dir", str(data),
                        "run", "pretrain", "-d", "toy", "--set", "pretrain.trainer.epochs=3", "--set",
                        "pretrain.backbone.dim=8"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1 and last.startswith(f"error: no space left on device: {cache / 'checkpoints'}/"), r.stderr
    assert last.endswith(".pt") and "enforce fail" not in r.stderr


def test_a_lock_file_another_user_owns_is_one_line_saying_which(cli, dirs, monkeypatch):
    toy(dirs[1])
    real_open = os.open

    def refuse_locks(path, *a, **kw):   # what a lock file owned by another user (mode 0644) gives a non-root user
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(os, "open", refuse_locks)
    r = cli("run", "data", "-d", "toy")
    assert r.code == 1 and one_line(r.err) and "Errno" not in r.err, r.err
    assert "cannot take the lock of data" in r.err and "permission denied: " in r.err
    assert str(dirs[0] / "runs") in r.err and ".lock" in r.err


def test_export_onto_a_symlink_or_under_a_file_is_one_line_saying_where(cli, dirs, tmp_path):
    toy(dirs[1])
    key = cli("run", "data", "-d", "toy").out.strip()
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty", target_is_directory=True)
    r = cli("export", key, "--out", str(tmp_path / "link"))
    assert r.code == 2 and one_line(r.err) and "Errno" not in r.err and "symbolic link" in r.err, r.err
    assert not list((tmp_path / "empty").iterdir()) and not list(tmp_path.glob(".tmp*"))
    (tmp_path / "file").write_text("x")
    r = cli("export", key, "--out", str(tmp_path / "file" / "out"))
    assert r.code == 2 and one_line(r.err) and "Errno" not in r.err and f"{tmp_path / 'file'}" in r.err, r.err


def test_error_and_status_lines_print_user_text_literally(cli, dirs, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 :x: 3\n")
    r = cli("data", "import", str(bad), "--name", "bad")
    assert r.code == 1 and "item id ':x:'" in r.err, r.err
    odd = tmp_path / "[bold]:x:.txt"
    odd.write_text("1 2 3 4\n2 3 4 5\n")
    r = cli("data", "import", str(odd), "--name", "odd")
    assert r.code == 0 and f"imported {odd} as odd" in r.err, r.err


# -- 6. odd inputs ---------------------------------------------------------------------------------

def test_only_regular_files_are_imported_or_fetched(cli, dirs, tmp_path):
    for args in (["data", "import", "/dev/null", "--name", "null"],
                 ["data", "fetch", "null", "--file", "/dev/null", "--sha256", "0" * 64]):
        r = cli(*args)
        assert r.code == 2 and "/dev/null: not a regular file" in r.err and one_line(r.err), r.err
    assert not (dirs[1] / "null").exists()
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)                       # no writer: a reader blocks forever (/dev/zero: fills the disk)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TSLREC_DATA_DIR": str(dirs[1]), "TSLREC_CACHE_DIR": str(dirs[0])}
    r = subprocess.run([sys.executable, "-c", "import tslrec; tslrec.main()", "data", "import", str(fifo), "--name", "p"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a regular file" in r.stderr, r.stderr


def test_every_exported_file_has_the_same_mode(cli, dirs, tmp_path):
    toy(dirs[1])
    key = cli("run", "sft", "-d", "toy", *ONE_EPOCH, "--set", "group.k=3", "--set", "sft.model=tiny-bert",
              "--set", "sft.epochs=1", "--set", "sft.max_items=6")
    assert key.code == 0, key.err
    r = cli("export", key.out.strip(), "--out", str(tmp_path / "sft"))
    assert r.code == 0, r.err
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in (tmp_path / "sft").rglob("*")}
    assert "sft/adapter/adapter_model.safetensors" in modes
    assert {m for p, m in modes.items() if (tmp_path / p).is_file()} == {"0o644"}, modes
    assert {m for p, m in modes.items() if (tmp_path / p).is_dir()} == {"0o755"}, modes
