"""Pack a cache's upstream runs (records and their objects) into one .tgz that unpacks into another cache.

A lent GPU starts bare each session, and its cache keys hold its own versions (python, torch,
transformers), so the CPU cache here cannot serve it. `gpu_check.sh grid` packs the chain it computed
(data, pretrain, group, sft, augment) into $OUT; the next session carries the file back
(.gpu/cache-pack.tgz) and unpacks it into the GPU's empty cache, so its trainings start at once:

    python -m benchmarks.cache_pack --cache .gpu-cache --datasets ml-1m --out $OUT/cache-pack.tgz
    tar xzf .gpu/cache-pack.tgz -C .gpu-cache       # the layout is the cache's own (runs/, objects/)

Nothing is trusted blindly on the other side: the runner verifies every record's digest and every
object's tensors before it uses them, as it does for its own files.
"""
from __future__ import annotations

import argparse
import sys
import tarfile
from pathlib import Path

from pipeline.cache import Cache

UPSTREAM = ("data", "pretrain", "group", "sft", "augment")


def pack(cache_dir: Path, out: Path, stages: tuple[str, ...] = UPSTREAM, datasets: set[str] | None = None) -> int:
    """Write the records of `stages` (of `datasets`, all if None) and their objects to `out`; the number packed."""
    if not (Path(cache_dir) / "runs").is_dir():
        raise FileNotFoundError(f"{cache_dir} is not a tslrec cache (no runs/ folder)")
    cache = Cache(cache_dir)
    picked = [r for r in cache.runs() if r.stage in stages
              and (datasets is None or r.pipeline.get("data", {}).get("dataset") in datasets)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for rec in picked:
                path = cache.run_path(rec.key)
                tar.add(path, arcname=str(path.relative_to(cache.root)))
                for ref in rec.outputs.values():   # a record whose object is gone fails here: no partial pack
                    obj = cache.object_path(ref.digest)
                    tar.add(obj, arcname=str(obj.relative_to(cache.root)))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    return len(picked)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--stages", nargs="+", default=list(UPSTREAM))
    ap.add_argument("--datasets", nargs="+", default=None, help="only these datasets' runs (default: all)")
    args = ap.parse_args()
    try:
        n = pack(args.cache, args.out, tuple(args.stages), set(args.datasets) if args.datasets else None)
    except OSError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"packed {n} runs into {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
