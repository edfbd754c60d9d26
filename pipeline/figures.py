"""PNG figures for `tslrec report`: Fig. 4 (C1/C2/C3 agreement), Fig. 5 (user-activity bins)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")   # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"base": "#9e9e9e", "ci": "#4c72b0", "tslrec": "#dd8452", "e4srec": "#55a868"}
CASES = (("c1", "#4c72b0", "C1: the LLM's top-1 category is the item's pre-group"),
         ("c2", "#dd8452", "C2: the pre-group is in the LLM's top 3, not top 1"),
         ("c3", "#c44e52", "C3: the pre-group is not in the LLM's top 3"))


def fig4_agreement(agreement: dict[str, dict[str, float]], path: Path) -> Path:
    """Stacked bars per dataset: the share of items in C1 / C2 / C3 (paper Fig. 4), defined on the figure."""
    names = list(agreement)
    fig, ax = plt.subplots(figsize=(5.5 + 1.2 * len(names), 3.8))
    bottom = [0.0] * len(names)
    for case, color, meaning in CASES:
        vals = [agreement[n][case] for n in names]
        ax.bar(names, vals, bottom=bottom, color=color, label=meaning, width=0.6)
        for i, v in enumerate(vals):
            if v > 0.04:
                ax.text(i, bottom[i] + v / 2, f"{100 * v:.0f}%", ha="center", va="center", fontsize=8, color="white")
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of items")
    ax.set_title("Category the tuned LLM infers for each item vs its k-means pre-group", fontsize=9)
    ax.legend(loc="upper left", fontsize=7, bbox_to_anchor=(1.02, 1.0), title="each item alone through the LLM:",
              title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fig5_activity(groups: dict[str, dict[str, list[tuple[float, float]]]], labels: list[str], counts: list[int],
                  title: str, path: Path) -> Path:
    """groups: variant -> {"hr10": [(mean, std) per bin], "ndcg10": [...]}; grouped bars with error bars
    (std over seeds), the bins' training-length ranges and user counts under the axis."""
    variants = list(groups)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / max(len(variants), 1)
    ticks = [f"{label}\nn={n:,}" for label, n in zip(labels, counts)]
    for ax, metric in zip(axes, ("hr10", "ndcg10")):
        for j, v in enumerate(variants):
            xs = [i + (j - (len(variants) - 1) / 2) * width for i in range(len(labels))]
            means, stds = zip(*groups[v][metric])
            ax.bar(xs, means, width=width, yerr=stds, capsize=2, label=v, color=COLORS.get(v), error_kw={"lw": 0.8})
        ax.set_xticks(range(len(labels)), ticks, fontsize=7)
        ax.set_xlabel("users binned by number of training items (n = users in the bin)", fontsize=8)
        ax.set_ylabel(metric.upper().replace("HR", "HR@").replace("NDCG", "NDCG@"))
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def activity_bins(train_lengths: Any, n_bins: int = 5) -> tuple[Any, list[str], list[int]]:
    """Users binned by training length at the length quantiles, so that no length falls in two bins
    (fewer than n_bins bins where lengths repeat a lot). Returns (bin of each user (M,) int64,
    labels "lo-hi" of the lengths in each bin, users per bin)."""
    import torch

    ordered = torch.sort(train_lengths).values
    m = ordered.numel()
    cuts = torch.unique(ordered[[min(m - 1, (i * m) // n_bins) for i in range(1, n_bins)]]) if m else ordered[:0]
    cuts = cuts[cuts > ordered[0]] if m else cuts                    # a bin starts at each cut length
    bins = torch.bucketize(train_lengths, cuts, right=True)          # (M,) 0..len(cuts)
    labels, counts = [], []
    for b in range(cuts.numel() + 1):
        members = train_lengths[bins == b]
        lo, hi = int(members.min()), int(members.max())
        labels.append(f"{lo}-{hi}" if lo != hi else f"{lo}")
        counts.append(int(members.numel()))
    return bins, labels, counts


def bin_metrics(bins: Any, ranks: Any, n_bins: int) -> dict[str, list[float]]:
    """HR@10 and NDCG@10 (0-based ranks) of the users of each bin."""
    import torch

    out: dict[str, list[float]] = {"hr10": [], "ndcg10": []}
    for b in range(n_bins):
        r = ranks[bins == b].double()
        hit = (r < 10).double()
        out["hr10"].append(float(hit.mean()))
        out["ndcg10"].append(float((hit / torch.log2(r + 2)).mean()))
    return out
