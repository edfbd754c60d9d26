"""Benchmark the four ID backbones (base variant) on one dataset over several seeds.

Calls the `data` and `pretrain` stage functions directly (no cache), and writes
benchmarks/results/backbones-<dataset>.json after every run, so a partial run leaves its
finished figures. Meant for the background:

    nohup python benchmarks/backbones.py --dataset beauty --seeds 3 > benchmarks/results/backbones-beauty.log 2>&1 &

One line per epoch goes to stderr (loss, validation NDCG@10).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from schemas.backbone import BackboneConfig, TrainerConfig  # noqa: E402
from schemas.data import DataConfig, DataIn  # noqa: E402
from schemas.pretrain import PretrainConfig, PretrainIn  # noqa: E402
from schemas.runtime import Runtime  # noqa: E402

BACKBONES = ["sasrec", "gru4rec", "caser", "fmlprec"]
METRICS = ["hr5", "hr10", "ndcg5", "ndcg10"]


class LineTracker:
    """Progress as one stderr line per epoch (readable in a nohup log, unlike a live bar)."""

    def __init__(self, description: str, total: int | None):
        self.description, self.total, self.n = description, total, 0

    def __enter__(self) -> "LineTracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.n += n
        info = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        print(f"{time.strftime('%H:%M:%S')} {self.description} epoch {self.n}/{self.total} {info}", file=sys.stderr, flush=True)

    def update(self, **fields: Any) -> None:
        return None


class LogRuntime(Runtime):
    def track(self, description: str, total: int | None) -> LineTracker:
        return LineTracker(description, total)


def load(dataset: str, rt: Runtime) -> tuple[str, dict[str, torch.Tensor]]:
    """A file path, or a dataset name found in the data dir (see `tslrec data`)."""
    import stages.data as data

    path = Path(dataset)
    if path.is_file():
        name = path.stem.lower()
    else:
        from pipeline.datasets import locate
        name, path = dataset, locate(dataset, rt)
    out = data.run(DataConfig(dataset=name), DataIn(path=path), rt)
    return name, out.artifacts["sequences"]


def overrides(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """--set backbone.dim=128 --set trainer.lr=1e-4 -> (backbone kwargs, trainer kwargs)."""
    out: dict[str, dict[str, Any]] = {"backbone": {}, "trainer": {}}
    for p in pairs:
        key, _, value = p.partition("=")
        section, _, field = key.partition(".")
        if section not in out or not field:
            raise SystemExit(f"--set {p}: expected backbone.FIELD=VALUE or trainer.FIELD=VALUE")
        out[section][field] = json.loads(value) if value not in ("", None) and value[0] in "0123456789-[{tfn" else value
    return out["backbone"], out["trainer"]


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ["torch", "pydantic", "numpy"]:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    return {
        "seeds": [r["seed"] for r in runs],
        "test": {m: stats([r["test"][m] for r in runs]) for m in METRICS},
        "valid": {m: stats([r["valid"][m] for r in runs]) for m in METRICS},
        **({"test_alt": {"mask_history": runs[0]["test_alt"]["mask_history"],
                         **{m: stats([r["test_alt"][m] for r in runs]) for m in METRICS}}}
           if all(r.get("test_alt") for r in runs) else {}),
        "seconds_per_epoch": stats([r["seconds_per_epoch"] for r in runs]),
        "seconds_per_eval": stats([r["seconds_per_eval"] for r in runs]),
        "best_epoch": stats([r["best_epoch"] for r in runs]),
        "epochs_run": stats([r["epochs_run"] for r in runs]),
        "wall_seconds": stats([r["wall_seconds"] for r in runs]),
    }


def from_cache(dataset: str, cache_dir: Path, mask_history: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Base-variant backbone runs already in the tslrec cache (pretrain, or train with variant=base),
    one per (backbone, seed), for results computed through `tslrec run` under one evaluation
    protocol (runs of the other history-masking setting are skipped, never mixed)."""
    from pipeline.cache import Cache

    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for rec in Cache(cache_dir).runs():
        if rec.pipeline["data"]["dataset"] != dataset or rec.stage not in ("pretrain", "train"):
            continue
        if rec.stage == "train" and rec.config["variant"] != "base":
            continue
        if rec.result["test"]["mask_history"] != mask_history:
            continue
        r = rec.result
        runs.setdefault(r["backbone"], {}).setdefault(r["seed"], {**r, "stage": rec.stage, "key": rec.key,
                                                                  "wall_seconds": rec.wall_s})
    return {b: [by_seed[s] for s in sorted(by_seed)] for b, by_seed in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty", help="dataset name (data dir) or path to a raw file")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    ap.add_argument("--backbones", nargs="+", default=BACKBONES, choices=BACKBONES)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="override a BackboneConfig/TrainerConfig field, e.g. trainer.lr=1e-4")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results/backbones-<dataset>.json")
    ap.add_argument("--unmasked", action="store_true", help="with --from-cache: runs evaluated without history masking")
    ap.add_argument("--from-cache", type=Path, default=None, metavar="CACHE_DIR",
                    help="train nothing: summarize the base runs already in this tslrec cache")
    args = ap.parse_args()
    if args.from_cache:
        found = from_cache(args.dataset, args.from_cache, mask_history=not args.unmasked)
        out_path = args.out or ROOT / "benchmarks" / "results" / f"backbones-{args.dataset}.json"
        out_path.write_text(json.dumps({
            "command": " ".join([Path(sys.executable).name, *sys.argv]), "commit": git_commit(),
            "source": f"tslrec cache {args.from_cache} (runs computed by `tslrec run`; their commit is in each run's code digest)",
            "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count()},
            "versions": versions(),
            "backbones": {b: {"summary": summary(rs), "runs": rs} for b, rs in found.items()},
        }, indent=2) + "\n")
        print(f"wrote {out_path}", file=sys.stderr)
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    rt = LogRuntime(progress=False, device=args.device, threads=args.threads)
    import stages.pretrain as pretrain

    name, sequences = load(args.dataset, rt)
    b_kw, t_kw = overrides(args.set)
    out_path = args.out or ROOT / "benchmarks" / "results" / f"backbones-{name}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": git_commit(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "device": args.device},
        "versions": versions(),
        "dataset": {"name": name, "n_users": int(sequences["offsets"].numel() - 1), "n_items": int(sequences["n_items"])},
        "overrides": {"backbone": b_kw, "trainer": t_kw},
        "backbones": {},
    }
    t_all = time.perf_counter()
    for backbone in args.backbones:
        runs = []
        for seed in range(args.seeds):
            cfg = PretrainConfig(backbone=BackboneConfig(name=backbone, **b_kw), trainer=TrainerConfig(seed=seed, **t_kw))
            t0 = time.perf_counter()
            res = pretrain.run(cfg, PretrainIn(sequences=sequences), rt).result
            runs.append({**res.model_dump(mode="json"), "wall_seconds": round(time.perf_counter() - t0, 2)})
            print(f"{backbone} seed {seed}: test HR@10 {res.test.hr10:.4f} NDCG@10 {res.test.ndcg10:.4f} "
                  f"best epoch {res.best_epoch} ({res.seconds_per_epoch:.1f} s/epoch)", file=sys.stderr, flush=True)
            report["backbones"][backbone] = {"config": cfg.model_dump(mode="json"), "summary": summary(runs), "runs": runs}
            report["wall_seconds"] = round(time.perf_counter() - t_all, 1)
            tmp = out_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(report, indent=2) + "\n")
            os.replace(tmp, out_path)   # a reader never sees a half-written file
    print(f"wrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
