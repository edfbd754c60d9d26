"""The paper's LLM baselines on one dataset, in one file: what ran (mean, std over seeds of the masked test
metrics, the unmasked `test_alt`, training seconds, peak memory) and, for what did not, `not_run` with the
cost measured on this machine class and what would run it.

Reads only committed results files (no training here):
- `llm-runs-<dataset>.json` (benchmarks/llm_runs.py: E4SRec and LlamaRec run seed by seed); a method with
  runs there is reported from them, the others from their cost files:
- `llamarec-cost-<dataset>.json` (benchmarks/llamarec_cost.py: sampled SmolLM2-135M steps, extrapolated),
- `p5-cost-<dataset>.json` (benchmarks/p5_cost.py: t5-small architecture from scratch, P5 and POD prompts),
- `efficiency-<dataset>.json` (benchmarks/efficiency.py: E4SRec's SFT epoch with MiniLM, extrapolated).

    python -m benchmarks.llm_baselines --dataset beauty   # -> benchmarks/results/llm-baselines-beauty.json
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from benchmarks.common import RESULTS, command, provenance, write_json

HOURS = 3600.0
SESSION_HOURS = 3.0    # a CPU session on this machine class; a run never spans two


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _commit(d: dict[str, Any]) -> str | None:
    """A results file's commit (`git_commit` in files written before benchmarks/common.py)."""
    return d.get("commit") or d.get("git_commit")


def not_run(hours_per_epoch: float, epochs: int, source: str, commit: str, what_runs_it: str, detail: str) -> dict[str, Any]:
    return {"n_seeds": 0, "seeds": [], "mean": None, "std": None, "test_alt": None, "train_seconds": None,
            "peak_rss_mb": None, "not_run": {"hours_per_epoch": round(hours_per_epoch, 1), "epochs": epochs,
                                             "hours_per_seed": round(hours_per_epoch * epochs, 1), "source": source,
                                             "commit": commit, "detail": detail, "what_would_run_it": what_runs_it}}


def llamarec(dataset: str) -> dict[str, Any] | None:
    d = _load(f"llamarec-cost-{dataset}.json")
    if d is None:
        return None
    ours = d["recipes"]["last+retriever"]
    theirs = d["recipes"]["all+random"]
    return not_run(ours["epoch_seconds_by_tokens"] / HOURS, d["config"]["epochs"], f"llamarec-cost-{dataset}.json",
                   _commit(d), "a GPU (the stage runs as `tslrec run llamarec`), or `llamarec.user_fraction` "
                   "subsampling users on this CPU (a documented config field)",
                   f"SmolLM2-135M bf16, one instance per user with the retriever's top-20 ({ours['instances']:,} "
                   f"instances); LlamaRec's own recipe (every prefix, random candidates) "
                   f"{theirs['epoch_seconds_by_tokens'] / HOURS:.0f} h per epoch")


def p5_pod(dataset: str) -> dict[str, dict[str, Any]]:
    d = _load(f"p5-cost-{dataset}.json")
    if d is None:
        return {}
    out = {}
    for method, epochs in (("p5", 10), ("pod", 1)):
        r = d["results"][method]
        out[method] = not_run(r["epoch_seconds_extrapolated"] / HOURS, epochs, f"p5-cost-{dataset}.json", _commit(d),
                              d["not_run"], f"t5-small architecture from scratch, {r['instances']:,} instances, "
                              f"batch {r['batch_size']}, {r['steps_per_epoch']:,} steps")
    return out


def e4srec(dataset: str) -> dict[str, Any] | None:
    d = _load(f"efficiency-{dataset}.json")
    if d is None:
        return None
    t = d["e4srec"]["train_epoch"]
    per_seed = 3 * t["seconds_extrapolated"] / HOURS
    where = ("about one CPU session per seed on this machine class, or a GPU" if per_seed <= SESSION_HOURS else
             f"a GPU: {per_seed:.0f} h per seed on one CPU thread is more than a {SESSION_HOURS:.0f}-hour session")
    return not_run(t["seconds_extrapolated"] / HOURS, 3, f"efficiency-{dataset}.json", _commit(d),
                   "3 seeds x 3 epochs of `tslrec run sft --set sft.task=next_item` (E4SRec's published recipe, "
                   f"the default of that task): {where}",
                   f"MiniLM-L6, {t['instances']:,} next-item instances, 1 thread")


def ran(dataset: str, method: str) -> dict[str, Any] | None:
    """A method's runs in llm-runs-<dataset>.json, summarized over seeds; None if it has none."""
    from pipeline.stats import METRICS, mean_std

    d = _load(f"llm-runs-{dataset}.json")
    runs = sorted((r for r in (d or {}).get("runs", []) if r["method"] == method), key=lambda r: r["seed"])
    if not runs:
        return None
    stats = {m: mean_std([r["test"][m] for r in runs]) for m in METRICS}
    alts = [r["test_alt"] for r in runs if r.get("test_alt")]
    return {"n_seeds": len(runs), "seeds": [r["seed"] for r in runs], "mean": {m: stats[m][0] for m in METRICS},
            "std": {m: stats[m][1] for m in METRICS},
            "test_alt": {m: mean_std([a[m] for a in alts])[0] for m in METRICS} if len(alts) == len(runs) else None,
            "valid_mean": {m: mean_std([r["valid"][m] for r in runs])[0] for m in METRICS},
            "train_seconds": mean_std([r["train_seconds"] for r in runs])[0],
            "seconds_per_epoch": mean_std([r["seconds_per_epoch"] for r in runs if r.get("seconds_per_epoch")])[0]
            if any(r.get("seconds_per_epoch") for r in runs) else None,
            "peak_rss_mb": max((r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb") is not None), default=None),
            "peak_cuda_mb": max((r["peak_cuda_mb"] for r in runs if r.get("peak_cuda_mb") is not None), default=None),
            "user_fraction": runs[0].get("user_fraction"), "sets": runs[0].get("sets", []),
            "source": f"llm-runs-{dataset}.json", "commit": _commit(d), "machine": d.get("machine"), "not_run": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty")
    args = ap.parse_args()
    costs = {"llamarec": llamarec(args.dataset), **p5_pod(args.dataset), "e4srec": e4srec(args.dataset)}
    methods = {k: ran(args.dataset, k) or costs.get(k) for k in ("llamarec", "p5", "pod", "e4srec")}
    record = {"command": command(), **provenance(), "dataset": args.dataset,
              "metrics": "hr5, hr10, ndcg5, ndcg10 on the test item, history masked (test_alt: unmasked)",
              "methods": {k: v for k, v in methods.items() if v is not None}}
    out = RESULTS / f"llm-baselines-{args.dataset}.json"
    write_json(out, record)
    print(out)


if __name__ == "__main__":
    main()
