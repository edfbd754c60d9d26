"""What can the `tslrec` gate fusion pass on at best? Train it with other tables in place of the LLM's.

The `train` stage's tslrec variant, unchanged, is trained with `enhanced` replaced by:
  pretrain  the pretrain backbone's own item table (what the LLM stages start from: an upper bound
            on the information the enhanced embeddings can carry about items)
  random    a fixed Gaussian table of the enhanced embeddings' shape (no information: what the gate
            and its projection cost or give by themselves)
  enhanced  the augment run's enhanced embeddings (the real variant, for a same-code comparison)
If `pretrain` does not beat Base either, no enhanced table derived from it through the LLM stages can
be expected to; if it does, the loss is in the LLM stages.

    python benchmarks/fusion_source.py --cache-dir ~/.cache/tslrec --augment 2a9a0c74 --source pretrain random

Superseded by the stage's own `train.source` (pretrain, random) and benchmarks/fusion.py, which run
through the runner and its cache; kept to reproduce fusion-source-*.json. Reads runs from a tslrec cache by key prefix (`tslrec cache ls`); trains outside the cache (these are
not pipeline runs); writes benchmarks/results/fusion-source-<dataset>.json (merging earlier sources).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from embedding_probe import augment_chain  # noqa: E402
from pipeline.cache import Cache  # noqa: E402
from pipeline.overrides import ConfigError, build_config  # noqa: E402
from pipeline.progress import make_tracker  # noqa: E402
from schemas.runtime import Runtime  # noqa: E402
from schemas.train import TrainIn  # noqa: E402
from stages import train  # noqa: E402

SOURCES = ("pretrain", "random", "enhanced")


def source_table(name: str, pretrain_table: torch.Tensor, enhanced: torch.Tensor) -> torch.Tensor:
    if name == "pretrain":
        return pretrain_table                                               # (N+1, d)
    if name == "random":
        g = torch.Generator().manual_seed(0)
        return torch.randn(enhanced.shape, generator=g)                     # (N+1, H)
    return enhanced                                                         # (N+1, H)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache-dir", type=Path, required=True)
    ap.add_argument("--augment", required=True, help="key prefix of an augment run")
    ap.add_argument("--source", nargs="+", choices=SOURCES, default=["pretrain", "random"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="train.field=value override")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache = Cache(args.cache_dir)
    aug, group, pretrain, data = augment_chain(cache, args.augment)
    dataset = data.pipeline["data"]["dataset"]
    try:
        cfg = build_config(sets=[f"data.dataset={dataset}", "train.variant=tslrec",
                                 f"train.trainer.seed={args.seed}", *args.sets]).train
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    sequences = cache.get(data.outputs["sequences"])
    pretrain_table = cache.get(pretrain.outputs["item_embeddings"])["weight"].float()
    enhanced = cache.get(aug.outputs["enhanced"])["embeddings"].float()
    out = args.out or ROOT / "benchmarks" / "results" / f"fusion-source-{dataset}.json"
    record = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    command = " ".join([Path(sys.executable).name, *sys.argv])
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    rt = Runtime(threads=args.threads, progress=True, tracker=make_tracker)
    for name in args.source:
        t0 = time.perf_counter()
        inp = TrainIn(sequences=sequences, enhanced={"embeddings": source_table(name, pretrain_table, enhanced)})
        res = train.run(cfg, inp, rt).result
        record["runs"][f"{name} seed {args.seed}"] = {
            "source": name, "seed": args.seed, "backbone": cfg.backbone.name, "command": command, "wall_s": round(time.perf_counter() - t0, 1),
            "test": res.test.model_dump(), "test_alt": res.test_alt.model_dump() if res.test_alt else None,
            "valid_ndcg10": res.valid.ndcg10, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
            "seconds_per_epoch": res.seconds_per_epoch, "seconds_per_eval": res.seconds_per_eval}
        print(f"{name}: test NDCG@10 {res.test.ndcg10:.4f} HR@10 {res.test.hr10:.4f} (best epoch {res.best_epoch})",
              file=sys.stderr)
        record.update({"command": command, "commit": commit,
                       "machine": {"platform": platform.platform(), "threads": args.threads},
                       "inputs": {"augment": aug.key, "group": group.key, "pretrain": pretrain.key, "data": data.key},
                       "train_config": cfg.model_dump(mode="json")})
        out.write_text(json.dumps(record, indent=1) + "\n")     # after every source: a crash keeps the rest
    print(out)


if __name__ == "__main__":
    main()
