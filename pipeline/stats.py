"""Aggregation over seeds and the two-sample t-test behind Table 2's stars."""
from __future__ import annotations

import math
import warnings
from collections import defaultdict
from typing import Any

METRICS = ["hr5", "hr10", "ndcg5", "ndcg10"]


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    m = sum(xs) / len(xs)
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0
    return m, math.sqrt(var)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """runs: [{backbone, variant, seed, test: {metric: v}}] -> one row per (backbone, variant)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["backbone"], r["variant"])].append(r)
    rows = []
    for (backbone, variant), rs in groups.items():
        row = {"backbone": backbone, "variant": variant, "n_seeds": len(rs), "mean": {}, "std": {},
               "per_seed": {m: [r["test"][m] for r in rs] for m in METRICS}}
        for m in METRICS:
            row["mean"][m], row["std"][m] = mean_std(row["per_seed"][m])
        if all(r.get("test_alt") for r in rs):   # the same weights under the other masking setting
            row["alt"] = {"mask_history": rs[0]["test_alt"]["mask_history"],
                          **{m: mean_std([r["test_alt"][m] for r in rs])[0] for m in METRICS}}
        row["seconds_per_epoch"] = mean_std([r["seconds_per_epoch"] for r in rs])[0]
        rows.append(row)
    return rows


def ttest_p(a: list[float], b: list[float]) -> float | None:
    """Two-sample (Student) t-test p-value, two-sided; None when either side has < 2 seeds."""
    if len(a) < 2 or len(b) < 2:
        return None
    from pipeline.extras import require

    ttest_ind = require("scipy.stats", "report", "the t-test over seeds").ttest_ind

    if len(set(a)) == 1 and len(set(b)) == 1:
        return 1.0 if a[0] == b[0] else 0.0
    with warnings.catch_warnings():
        # One side's seeds equal to the last bit (a cell that ignores the seed): scipy warns of
        # cancellation in that side's variance, which is ~0 either way; the pooled test stays sound.
        warnings.filterwarnings("ignore", "Precision loss occurred in moment calculation", RuntimeWarning)
        return float(ttest_ind(a, b).pvalue)


def significance(rows: list[dict[str, Any]], ours: str = "tslrec") -> list[dict[str, Any]]:
    """For each backbone and metric: TSLRec against the best other variant (by mean), as in Table 2."""
    out = []
    for backbone in sorted({r["backbone"] for r in rows}):
        mine = [r for r in rows if r["backbone"] == backbone]
        target = next((r for r in mine if r["variant"] == ours), None)
        others = [r for r in mine if r["variant"] != ours]
        if target is None or not others:
            continue
        for m in METRICS:
            best = max(others, key=lambda r: r["mean"][m])
            out.append({"backbone": backbone, "metric": m, "vs": best["variant"],
                        "diff": target["mean"][m] - best["mean"][m],
                        "p": ttest_p(target["per_seed"][m], best["per_seed"][m])})
    return out
