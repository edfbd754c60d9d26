"""Item text: does a table the language model made from item text beat Base, and does TSLRec's SFT add to it?

Cells (each a `train` run through the runner and its cache, as in benchmarks/fusion.py):
  Base; `text-LM` x fusions (train.source=text: the LM's reading of each item's text, no SFT: the control);
  `enhanced-LM-title` x fusions (TSLRec with sft.item_text=title); later phases add the validation-chosen
  cells' other seeds, the ensemble of Base with the best text cell, and another LM.
Selection is on validation NDCG@10 only, and only over the seeds every candidate has (`--select-seeds`).

    python -m benchmarks.text run --dataset beauty --backbones sasrec --out DIR/sasrec.json
    python -m benchmarks.text merge DIR/*.json --out benchmarks/results/text-beauty.json
    python -m benchmarks.text run --dataset beauty --backbones sasrec --seeds 45 46 47 --cells add:text-minilm \
        --out DIR/replication-sasrec.json      # the replication of a chosen cell, with its Base

`run` executes the plan's phases in order (a later phase reads the earlier phases' validation figures to pick
its cells) and rewrites its --out after every run; rerunning resumes (finished runs are cache hits). `merge`
pools run files into the issue's schema: `cells` as fusion-<dataset>.json plus `p_vs_text_only`,
`p_vs_ensemble_control` (an ensemble with a text member against the ensemble of two Base models) and
`by_popularity` (test NDCG@10 by popularity bin of the test item: 5 bins of equal user counts, with their
item counts), `choice_on_valid`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import command, log_runtime, provenance, write_json
from benchmarks.fusion import cell_config, run_cell, summarize_cells
from pipeline.runner import Runner
from pipeline.stats import ttest_p
from schemas.names import EMBEDDING_FUSIONS as FUSIONS     # the ensemble is its own phase
from stages.core.sequences import Sequences

N_BINS = 5


# -- popularity bins ----------------------------------------------------------------------------------
def popularity_bins(seqs: Sequences) -> tuple[torch.Tensor, dict[str, Any]]:
    """(bin of each user's test item (M,), description): popularity = the item's count in every user's
    training part; bin edges at the quintiles of the test items' popularity over users (equal user counts)."""
    train = seqs.train_part()
    pop = torch.bincount(train.items.long(), minlength=seqs.n_items + 1)            # (N+1,)
    test_items = seqs.items[seqs.offsets[1:] - 1].long()                             # (M,)
    p = pop[test_items].double()
    edges = torch.quantile(p, torch.linspace(0, 1, N_BINS + 1, dtype=torch.float64))
    bins = torch.bucketize(p, edges[1:-1], right=True)                                # (M,) 0..N_BINS-1
    desc = [{"bin": b, "popularity_min": int(p[bins == b].min()) if bool((bins == b).any()) else None,
             "popularity_max": int(p[bins == b].max()) if bool((bins == b).any()) else None,
             "n_users": int((bins == b).sum()), "n_items": int(torch.unique(test_items[bins == b]).numel())}
            for b in range(N_BINS)]
    return bins, {"definition": "popularity = training-part interactions of the test item; bins at its quintiles over users",
                  "bins": desc}


def ndcg10_by_bin(test_ranks: torch.Tensor, bins: torch.Tensor) -> list[float]:
    """Test NDCG@10 per popularity bin from 0-based per-user ranks."""
    gain = torch.where(test_ranks < 10, 1.0 / torch.log2(test_ranks.double() + 2), torch.zeros((), dtype=torch.float64))
    return [float(gain[bins == b].mean()) if bool((bins == b).any()) else float("nan") for b in range(N_BINS)]


# -- phases --------------------------------------------------------------------------------------------
def best(runs: dict, backbone: str, sources: list[str], fusions: list[str], seeds: list[int]) -> tuple[str, str] | None:
    """(fusion, source) with the best mean validation NDCG@10 over `seeds`, among cells that have all of them."""
    scores = {}
    for f in fusions:
        for s in sources:
            vals = [runs[(backbone, f, s, sd)]["valid"]["ndcg10"] for sd in seeds if (backbone, f, s, sd) in runs]
            if len(vals) == len(seeds):
                scores[(f, s)] = sum(vals) / len(vals)
    return max(scores, key=scores.get) if scores else None


def plan_beauty(runs: dict, backbone: str, args) -> list[list[tuple]]:
    """Phases of (backbone, fusion, source, seed, extra sets); later phases depend on earlier validation."""
    lm, sel, rest = args.lm, args.select_seeds, [s for s in args.seeds if s not in args.select_seeds]
    text, enh = f"text-{lm}", f"enhanced-{lm}-title"
    phases = [[(backbone, "base", None, s, []) for s in args.seeds]]
    phases.append([(backbone, f, text, s, []) for f in FUSIONS for s in sel])
    phases.append(lambda: [(backbone, *b, s, []) for b in [best(runs, backbone, [text], FUSIONS, sel)] if b for s in rest])
    phases.append([(backbone, f, enh, s, []) for f in FUSIONS for s in sel])
    phases.append(lambda: [(backbone, *b, s, []) for b in [best(runs, backbone, [enh], FUSIONS, sel)] if b for s in rest])
    phases.append(lambda: [(backbone, "ensemble", text, s, [f"train.ensemble_member={b[0]}"])
                           for b in [best(runs, backbone, [text], FUSIONS, sel)] if b for s in args.seeds])
    return phases


def plan_cells(runs: dict, backbone: str, args) -> list[list[tuple]]:
    """--cells FUSION:SOURCE ...: Base and the named cells on --seeds, seed by seed (a replication of chosen
    cells; a run stopped by the deadline leaves whole seeds). --skip-base leaves Base to another core or file."""
    cells = [tuple(c.split(":", 1)) for c in args.cells]
    base = [] if args.skip_base else [("base", None)]
    return [[(backbone, f, src, s, []) for f, src in [*base, *cells]] for s in args.seeds]


def run_plan(args) -> None:
    runner = Runner(log_runtime(args.device, args.threads, args.cache_dir))
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    runs = {(r["backbone"], r["fusion"], r["source"], r["seed"]): r for r in old.get("runs", [])}
    meta = {"command": command(), "dataset": args.dataset, "sets": args.sets, **provenance(args.device, args.threads)}
    data_cfg = cell_config(args.dataset, (args.backbones[0], "base", None), args.seeds[0], args.sets)
    data = runner.run("data", data_cfg)
    bins, pop_meta = popularity_bins(Sequences.from_tensors(runner.load(data, "sequences")))
    meta["popularity"] = pop_meta
    deadline = time.time() + args.deadline_s if args.deadline_s else None
    for backbone in args.backbones:
        for phase in (plan_cells if args.cells else plan_beauty)(runs, backbone, args):
            for b, fusion, source, seed, extra in (phase() if callable(phase) else phase):
                if deadline and time.time() > deadline:
                    print(f"{time.strftime('%H:%M:%S')} deadline reached; stopping", file=sys.stderr)
                    return
                cfg = cell_config(args.dataset, (b, fusion, source), seed, [*args.sets, *extra])
                r = run_cell(runner, (b, fusion, source), seed, cfg)
                rec = runner._done[r["key"]]
                r["by_popularity_ndcg10"] = ndcg10_by_bin(runner.load(rec, "ranks")["test"].long(), bins)
                r["extra_sets"] = extra
                runs[(b, fusion, source, seed)] = r
                print(f"{time.strftime('%H:%M:%S')} {b}/{fusion}/{source} seed {seed}: valid NDCG@10 "
                      f"{r['valid']['ndcg10']:.4f} test {r['test']['ndcg10']:.4f}{' (cached)' if r['cached'] else ''}",
                      file=sys.stderr, flush=True)
                write_json(args.out, {**meta, "runs": list(runs.values())})


# -- merge ---------------------------------------------------------------------------------------------
def unique_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per (backbone, fusion, source, seed): files that share a cell (a --cells run repeats its Base, a
    cache hit) hold the same train record, counted once; two different records of one cell and seed are two
    computations that cannot be pooled, so they stop the merge."""
    seen: dict[tuple, dict[str, Any]] = {}
    for r in runs:
        k = (r["backbone"], r["fusion"], r["source"], r["seed"])
        if k in seen and seen[k]["key"] != r["key"]:
            raise SystemExit(f"{'/'.join(map(str, k[:3]))} seed {k[3]} has two different records "
                             f"({seen[k]['key'][:12]}, {r['key'][:12]}): runs of different code or settings")
        seen.setdefault(k, r)
    return list(seen.values())


def cell_sets(rs: list[dict[str, Any]]) -> list[str]:
    """The --set of the files a cell's runs came from: one list, or the seeds ran under different settings."""
    found = {tuple(r.get("sets", [])) for r in rs}
    if len(found) > 1:
        r = rs[0]
        raise SystemExit(f"{r['backbone']}/{r['fusion']}/{r['source']}: its seeds ran with different --set "
                         f"({' vs '.join(map(str, sorted(found)))}): they cannot be pooled")
    return list(found.pop())


def merge(files: list[Path], out: Path) -> None:
    metas = [json.loads(f.read_text()) for f in files]
    runs = unique_runs([{"sets": m.get("sets", []), **r} for m in metas for r in m["runs"]])
    cells = summarize_cells(runs)
    by = {}
    for r in runs:
        by.setdefault((r["backbone"], r["fusion"], r["source"]), []).append(r)
    for c in cells:
        rs = sorted(by[(c["backbone"], c["fusion"], c["source"])], key=lambda r: r["seed"])
        c["by_popularity"] = [sum(r["by_popularity_ndcg10"][b] for r in rs) / len(rs) for b in range(N_BINS)]
        c["extra_sets"] = rs[0].get("extra_sets", [])
        c["sets"] = cell_sets(rs)
        src = c["source"] or ""
        c["p_vs_text_only"] = None
        two_bases = sorted(by.get((c["backbone"], "ensemble", "none"), []), key=lambda r: r["seed"])
        c["p_vs_ensemble_control"] = {"ndcg10": ttest_p([r["test"]["ndcg10"] for r in rs], [r["test"]["ndcg10"] for r in two_bases])} \
            if c["fusion"] == "ensemble" and src != "none" and two_bases else None
        if src.startswith("enhanced-") and src.endswith(("-title", "-all")):     # a text-enhanced cell
            lm = src.removeprefix("enhanced-").rpartition("-")[0]
            ctrl = by.get((c["backbone"], c["fusion"], f"text-{lm}"), [])
            mine = [r["test"]["ndcg10"] for r in rs]
            c["p_vs_text_only"] = {"ndcg10": ttest_p(mine, [r["test"]["ndcg10"] for r in sorted(ctrl, key=lambda r: r["seed"])])} if ctrl else None
    shared = [s for s in metas[0].get("sets", []) if all(s in m.get("sets", []) for m in metas)]
    record = {**{k: metas[0][k] for k in ("command", "dataset", "commit", "machine", "versions", "popularity")},
              "sets": shared,      # every input file's; a cell's own are in its `sets`
              # a merged file given again (its inputs gone with their machine) brings its own provenance lists
              "commands": [c for m in metas for c in m.get("commands", [m["command"]])],
              "commits": [c for m in metas for c in m.get("commits", [m.get("commit")])],
              "inputs": [i for f, m in zip(files, metas) for i in m.get("inputs", [str(f)])],
              "cells": cells, "choice_on_valid": choice(cells), "runs": runs}
    write_json(out, record)


def choice(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Per backbone and kind (text-only, text-enhanced): the cell with the best mean validation NDCG@10
    among cells with the most seeds, and whether it beats Base on validation. Test plays no part."""
    out = {}
    for backbone in sorted({c["backbone"] for c in cells}):
        mine = [c for c in cells if c["backbone"] == backbone]
        base = next((c for c in mine if c["fusion"] == "base"), None)
        for kind, test in (("text_only", lambda s: s.startswith("text-")),
                           ("text_enhanced", lambda s: s.startswith("enhanced-") and s.endswith(("-title", "-all")))):
            cand = [c for c in mine if test(c["source"] or "") and c["fusion"] != "ensemble"]
            if not cand:
                continue
            n = max(c["n_seeds"] for c in cand)
            top = max((c for c in cand if c["n_seeds"] == n), key=lambda c: c["valid_mean"]["ndcg10"])
            out.setdefault(backbone, {})[kind] = {
                "fusion": top["fusion"], "source": top["source"], "n_seeds": n, "valid_ndcg10": top["valid_mean"]["ndcg10"],
                "base_valid_ndcg10": base["valid_mean"]["ndcg10"] if base else None,
                "beats_base_on_valid": bool(base and top["valid_mean"]["ndcg10"] > base["valid_mean"]["ndcg10"]),
                "test_ndcg10": top["mean"]["ndcg10"], "p_vs_base": top["p_vs_base"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dataset", default="beauty")
    r.add_argument("--backbones", nargs="+", default=["sasrec", "fmlprec"])
    r.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    r.add_argument("--select-seeds", nargs="+", type=int, default=[42], help="seeds on whose validation the fusion is chosen")
    r.add_argument("--lm", default="minilm")
    r.add_argument("--device", default="cpu")
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--cache-dir", type=Path, default=None)
    r.add_argument("--set", dest="sets", action="append", default=[])
    r.add_argument("--deadline-s", type=float, default=None, help="start no run after this many seconds")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--cells", nargs="+", default=None, help="FUSION:SOURCE cells to run with Base on --seeds, instead of the plan")
    r.add_argument("--skip-base", action="store_true", help="with --cells: run only the named cells, not Base (e.g. "
                   "Base trains on the other core; merge pools the files)")
    m = sub.add_parser("merge")
    m.add_argument("files", nargs="+", type=Path)
    m.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "merge":
        merge(args.files, args.out)
        return
    if args.skip_base and not args.cells:
        ap.error("--skip-base needs --cells")
    if args.threads:
        torch.set_num_threads(args.threads)
    run_plan(args)


if __name__ == "__main__":
    main()
