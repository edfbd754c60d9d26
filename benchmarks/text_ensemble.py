"""The ensemble of Base with a text cell, from the two cells' cached trained models: no training.

    python -m benchmarks.text_ensemble DIR/text-beauty-sasrec.json --cache-dir C --cell add:text-minilm \
        --out DIR/ensemble-beauty-sasrec.json
    python -m benchmarks.text merge DIR/text-beauty-sasrec.json DIR/ensemble-beauty-sasrec.json ... --out R

For every seed where the runs file (from `benchmarks.text run`) has Base and the cell, both trained models
are loaded from the cache and mixed by the rule of the `ensemble` fusion (stages/core/ensemble.py):
(1 - w) log p_Base + w log p_cell, w chosen on validation NDCG@10 from its WEIGHTS (ties go to the smaller
w, towards Base), the test ranked with that w only. The `ensemble` fusion trains both members again; here the
members are the very models the table's Base and text cells report, so the cell costs two evaluations per
weight instead of two trainings. The check that the models loaded are those models: at w = 0 the validation
ranks must be Base's recorded ranks, and at w = 1 the cell's (evaluation is float32 in both; see member_check).

The output is a runs file in `benchmarks.text run`'s schema: fusion 'ensemble', the cell's source,
`extra_sets` ['train.ensemble_member=FUSION'], and a key made of the two members' keys.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import command, provenance, write_json
from benchmarks.text import ndcg10_by_bin, popularity_bins, unique_runs
from pipeline.cache import Cache
from pipeline.stats import METRICS
from schemas.common import ArtifactRef, RunRecord
from schemas.train import TrainConfig
from stages.core.ensemble import WEIGHTS, mixed_ranks
from stages.core.evaluate import metrics
from stages.core.sequences import Sequences
from stages.train import base_model, fused_model


def input_tensors(cache: Cache, rec: RunRecord, name: str) -> dict[str, torch.Tensor]:
    """The artifact a run read as input `name` (records name inputs by digest)."""
    digest = rec.inputs[name]
    return cache.get(ArtifactRef(kind=name, digest=digest, path=str(cache.object_path(digest))))


def train_config(rec: RunRecord) -> TrainConfig:
    """The TrainConfig of a `train` run, or of the `pretrain` run a SASRec Base cell reuses (its own config holds
    the same backbone and trainer fields)."""
    if rec.stage == "pretrain":
        return TrainConfig.model_validate({k: rec.config[k] for k in ("backbone", "trainer")} | {"variant": "base"})
    return TrainConfig.model_validate(rec.config)


def trained_model(cache: Cache, rec: RunRecord, n_items: int) -> torch.nn.Module:
    """The trained backbone of a cached `train` run (or of the `pretrain` run a SASRec Base cell reuses)."""
    cfg = train_config(rec)
    seed = cfg.trainer.seed
    if cfg.variant == "base":
        model = base_model(cfg, n_items, seed)
    else:
        table = input_tensors(cache, rec, "text_table")["embeddings"].float()       # (N+1, H)
        model = fused_model(cfg, cfg.fusion, table, n_items, seed)
    model.load_state_dict({k: v.float() for k, v in cache.get(rec.outputs["backbone"]).items()})
    return model.eval()


def member_check(cache: Cache, rec: RunRecord, ranks: torch.Tensor, mask: bool) -> float:
    """Fraction of users whose validation rank differs from the run's recorded one; stops unless it is under 1%
    and NDCG@10 is within 1e-4. (Ranks from log-probabilities can tie where the raw scores did not: log_softmax
    rounds in float32. On Beauty under 0.1% of users move, by at most 2 places; NDCG@10 agrees to 6 digits.)"""
    recorded = cache.get(rec.outputs["ranks"])["valid"].long()
    moved = float((ranks != recorded).float().mean())
    if moved > 0.01 or abs(metrics(ranks, mask).ndcg10 - metrics(recorded, mask).ndcg10) > 1e-4:
        raise SystemExit(f"error: the loaded {rec.stage} model {rec.key[:12]} does not rank validation as its run "
                         f"recorded ({moved:.1%} of users moved; another code version or settings?)")
    return moved


def cached_run(cache: Cache, run: dict[str, Any]) -> RunRecord:
    rec = cache.get_run(run["key"])
    if rec is None:
        raise SystemExit(f"error: {run['backbone']}/{run['fusion']} seed {run['seed']}: run {run['key'][:12]} is not in {cache.root}")
    return rec


def ensemble_run(cache: Cache, base: dict[str, Any], cell: dict[str, Any], seqs: Sequences, seqs_digest: str,
                 bins: torch.Tensor) -> dict[str, Any]:
    """One seed: the mix of the two runs' models, w chosen on validation, in `benchmarks.text run`'s schema.
    `seqs` is the data every run of the files must have read (its digest `seqs_digest`), loaded once."""
    rec_a, rec_b = cached_run(cache, base), cached_run(cache, cell)
    if {rec_a.inputs["sequences"], rec_b.inputs["sequences"]} != {seqs_digest}:
        raise SystemExit(f"error: seed {base['seed']}: its runs read other data than the first pair's (one dataset per call)")
    cfg = train_config(rec_a)
    models = (trained_model(cache, rec_a, seqs.n_items), trained_model(cache, rec_b, seqs.n_items))
    kw = dict(max_len=cfg.backbone.max_len, batch_size=cfg.trainer.eval_batch_size, device=torch.device("cpu"))
    mask = cfg.trainer.mask_history
    t0 = time.perf_counter()
    valid = mixed_ranks(models, seqs.train_part(), seqs.valid_targets(), WEIGHTS, mask_history=mask, **kw)  # (W, M)
    agree = [member_check(cache, rec, valid[i], mask) for i, rec in ((0, rec_a), (-1, rec_b))]
    ndcg = [metrics(r, mask).ndcg10 for r in valid]
    best = max(range(len(WEIGHTS)), key=lambda i: (ndcg[i], -i))                     # ties: the smaller weight
    w = WEIGHTS[best]
    test_in, test_t = seqs.prefix(1), seqs.test_targets()
    test = mixed_ranks(models, test_in, test_t, (w,), mask_history=mask, **kw)[0]
    alt = mixed_ranks(models, test_in, test_t, (w,), mask_history=not mask, **kw)[0]
    pick = lambda m: {k: getattr(m, k) for k in METRICS}                              # noqa: E731
    control = cell["fusion"] == "base"               # Base + another Base: the control, source 'none'
    return {"backbone": cell["backbone"], "fusion": "ensemble", "source": "none" if control else cell["source"],
            "seed": base["seed"],
            "key": hashlib.sha256(f"ensemble {rec_a.key} {rec_b.key}".encode()).hexdigest(), "stage": "posthoc",
            "members": {"base": rec_a.key, "cell": rec_b.key, "cell_fusion": cell["fusion"],
                        "cell_seed": cell["seed"], "valid_ranks_moved": agree},
            "cached": False, "wall_s": round(time.perf_counter() - t0, 1), "run_wall_s": None,
            "valid": pick(metrics(valid[best], mask)), "test": pick(metrics(test, mask)),
            "test_alt": pick(metrics(alt, not mask)), "valid_ndcg10_by_weight": dict(zip(map(str, WEIGHTS), ndcg)),
            "best_epoch": None, "epochs_run": None, "seconds_per_epoch": None, "ensemble_weight": w,
            "by_popularity_ndcg10": ndcg10_by_bin(test, bins), "extra_sets": [] if control else [f"train.ensemble_member={cell['fusion']}"]}


def pairs(runs: list[dict[str, Any]], args) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(Base run, second member's run) per seed: the cell's run of that seed, or with --control-seeds the Base
    run of the matching control seed."""
    by = {(r["backbone"], r["fusion"], r["source"], r["seed"]): r for r in unique_runs(runs)}
    out = []
    for backbone in sorted({k[0] for k in by}):
        base = lambda s: by.get((backbone, "base", None, s))                       # noqa: E731
        if args.control_seeds:
            out += [(base(s), base(c)) for s, c in zip(args.seeds, args.control_seeds) if base(s) and base(c)]
        else:
            fusion, source = args.cell.split(":", 1)
            out += [(base(s), by[(backbone, fusion, source, s)]) for s in (args.seeds or sorted({k[3] for k in by}))
                    if base(s) and (backbone, fusion, source, s) in by]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="runs files of `benchmarks.text run` with Base and the cell")
    ap.add_argument("--cache-dir", type=Path, required=True, help="the cache those runs are in")
    ap.add_argument("--cell", default=None, help="FUSION:SOURCE of the cell mixed with Base, e.g. add:text-minilm")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="Base's seeds (default: every seed with both)")
    ap.add_argument("--control-seeds", nargs="+", type=int, default=None,
                    help="the control instead of a cell: Base of seed --seeds[i] mixed with Base of this seed i "
                         "(the `ensemble` fusion's control, source 'none': what any second model adds)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if (args.cell is None) == (args.control_seeds is None) or (args.control_seeds and len(args.control_seeds) != len(args.seeds or [])):
        raise SystemExit("error: give --cell, or --control-seeds with as many --seeds")
    torch.set_num_threads(args.threads)
    try:
        files = [json.loads(f.read_text()) for f in args.runs]
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"error: cannot read a runs file: {e}") from None
    todo = pairs([r for f in files for r in f["runs"]], args)
    if not todo:
        raise SystemExit(f"error: no seed has both members in {', '.join(map(str, args.runs))}")
    cache = Cache(args.cache_dir)
    first = cached_run(cache, todo[0][1])
    seqs = Sequences.from_tensors(input_tensors(cache, first, "sequences"))
    bins, _ = popularity_bins(seqs)
    runs = []
    for base, second in todo:
        runs.append(ensemble_run(cache, base, second, seqs, first.inputs["sequences"], bins))
        r = runs[-1]
        print(f"{r['backbone']} seed {r['seed']}: w {r['ensemble_weight']}, valid NDCG@10 {r['valid']['ndcg10']:.4f}, "
              f"test {r['test']['ndcg10']:.4f}", file=sys.stderr, flush=True)
    write_json(args.out, {"command": command(), "dataset": files[0]["dataset"], "sets": files[0].get("sets", []),
                          **provenance("cpu", args.threads), "popularity": files[0].get("popularity"),
                          "source_runs": [str(f) for f in args.runs], "runs": runs})
    print(args.out)


if __name__ == "__main__":
    main()
