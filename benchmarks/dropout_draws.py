"""Do the SFT's fast dropout masks (stages/lm/dropout.py) train as well as torch's? The SFT's held-out users' MSE
on --seeds (sft.seed) with each way of drawing them, and its seconds per epoch.

The two draw the same independent Bernoulli masks (p rounded to 2^-16) from different random streams, so the
MSEs should differ by no more than seeds do. The SFT's key cannot tell the two apart (no config field), so the
stage's `run` is called directly on its cached inputs and nothing is stored: 'torch' undoes the swap that
`sft.make_model` makes on the CPU (nn.Dropout and the eager attention). Seeds and draws alternate, so load drift
hits both alike.

    python -m benchmarks.dropout_draws --dataset beauty --seeds 42 43 44 --threads 1 --cache-dir CACHE
    python -m benchmarks.dropout_draws --merge FILE_42_44 FILE_45_47 --out FILE     # one study, more seeds

Writes benchmarks/results/dropout-draws-<dataset>.json.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Iterator

import torch

from benchmarks.common import RESULTS, command, provenance, write_json
from pipeline.datasets import DatasetError
from pipeline.overrides import ConfigError, build_config
from pipeline.progress import LineTracker
from pipeline.runner import Runner
from pipeline.stats import ttest_p
from schemas.runtime import Runtime

DRAWS = ("fast", "torch")


@contextlib.contextmanager
def drawn_by(draws: str) -> Iterator[None]:
    """Inside: sft.make_model draws its CPU dropout masks the `draws` way ('fast': the stage's own)."""
    import stages.sft as sft

    if draws == "fast":
        yield
        return
    saved = sft.use_fast_dropout, sft.FAST_EAGER
    sft.use_fast_dropout, sft.FAST_EAGER = (lambda model: 0), "eager"   # torch's nn.Dropout, transformers' eager
    try:
        yield
    finally:
        sft.use_fast_dropout, sft.FAST_EAGER = saved


def sft_once(runner: Runner, dataset: str, seed: int, draws: str, sets: list[str]) -> dict:
    import stages.sft as sft

    cfg = build_config(sets=[*sets, f"data.dataset={dataset}", f"sft.seed={seed}"])
    stage_cfg, inputs = runner.stage_inputs("sft", cfg)
    t0 = time.perf_counter()
    with drawn_by(draws):
        r = sft.run(stage_cfg, inputs, runner.rt).result
    return {"draws": draws, "seed": seed, "wall_s": round(time.perf_counter() - t0, 1),
            **{k: getattr(r, k) for k in ("valid_mse", "valid_mse_mean_baseline", "train_loss", "seconds_per_epoch")}}


def paired_p(diffs: list[float]) -> float | None:
    """Two-sided p of a paired t-test (mean difference 0) over seeds; None under 2 pairs."""
    if len(diffs) < 2:
        return None
    from scipy.stats import ttest_1samp

    return float(ttest_1samp(diffs, 0.0).pvalue)


def merge(paths: list[Path]) -> dict:
    """One record from files of the same study on other seeds: their rows, the summary over all of them."""
    try:
        records = [json.loads(p.read_text()) for p in paths]
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: cannot read a file to merge: {e}") from e
    for key in ("dataset", "sets", "commit"):
        if len({json.dumps(r[key]) for r in records}) > 1:
            raise SystemExit(f"error: the files differ in {key}; merge only one study's runs")
    rows = [row for r in records for row in r["rows"]]
    return {**records[0], "command": command(), "merged_from": [str(p) for p in paths],
            "commands": [r["command"] for r in records], "seeds": [s for r in records for s in r["seeds"]],
            "rows": rows, "summary": summarize(rows), "wall_seconds": sum(r["wall_seconds"] for r in records)}


def summarize(rows: list[dict]) -> dict:
    """Per draws: mean and std of the held-out MSE and the median seconds per epoch; fast against torch."""
    out = {}
    for d in DRAWS:
        mse = [r["valid_mse"] for r in rows if r["draws"] == d]
        if mse:
            out[d] = {"n_seeds": len(mse), "valid_mse_mean": statistics.mean(mse),
                      "valid_mse_std": statistics.stdev(mse) if len(mse) > 1 else 0.0,
                      "seconds_per_epoch_median": statistics.median(r["seconds_per_epoch"] for r in rows if r["draws"] == d)}
    if len(out) == 2:
        fast, torch_ = ([r["valid_mse"] for r in rows if r["draws"] == d] for d in DRAWS)
        out["p_valid_mse"] = ttest_p(fast, torch_)
        by = {(r["seed"], r["draws"]): r["valid_mse"] for r in rows}
        diffs = [by[s, "fast"] - by[s, "torch"] for s in sorted({r["seed"] for r in rows}) if (s, "fast") in by and (s, "torch") in by]
        out["valid_mse_diff_by_seed"] = diffs        # same seed: same initialisation and batches, other masks
        out["p_valid_mse_paired"] = paired_p(diffs)
        out["seconds_ratio_fast_vs_torch"] = out["fast"]["seconds_per_epoch_median"] / out["torch"]["seconds_per_epoch_median"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    ap.add_argument("--set", dest="sets", action="append", default=[], help="a --set for the SFT (KEY=VALUE)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=None, help="where the SFT's inputs are (or are computed)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, help="files of this study on other seeds: "
                    "write one with all their rows and the summary over them (nothing is run)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or RESULTS / f"dropout-draws-{args.dataset}.json"
    if args.merge:
        write_json(out, merge(args.merge))
        print(out)
        return
    torch.set_num_threads(args.threads)            # the stage runs outside the runner, which would set it
    runner = Runner(Runtime(progress=True, tracker=LineTracker, threads=args.threads,
                            **({"cache_dir": args.cache_dir} if args.cache_dir else {})))
    t0 = time.perf_counter()
    rows = []
    for i, seed in enumerate(args.seeds):
        for draws in DRAWS if i % 2 == 0 else DRAWS[::-1]:
            try:
                rows.append(sft_once(runner, args.dataset, seed, draws, args.sets))
            except (DatasetError, ConfigError) as e:   # before any file is written
                raise SystemExit(f"error: {e}") from e
            print(f"{draws} seed {seed}: valid MSE {rows[-1]['valid_mse']:.5f}, "
                  f"{rows[-1]['seconds_per_epoch']:.0f} s/epoch", file=sys.stderr)
    write_json(out, {"benchmark": "dropout-draws", "command": command(), **provenance("cpu", args.threads),
                     "dataset": args.dataset, "sets": args.sets, "seeds": args.seeds, "rows": rows,
                     "summary": summarize(rows), "wall_seconds": round(time.perf_counter() - t0, 1)})
    print(out)


if __name__ == "__main__":
    main()
