"""PNG figures for `tslrec report`: Fig. 4 (C1/C2/C3 agreement), Fig. 5 (user-activity groups)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")   # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"base": "#9e9e9e", "ci": "#4c72b0", "tslrec": "#dd8452", "e4srec": "#55a868"}


def fig4_agreement(agreement: dict[str, dict[str, float]], path: Path) -> Path:
    """Stacked bars per dataset: C1 top-1 agrees, C2 in top-3, C3 disagrees (paper Fig. 4)."""
    names = list(agreement)
    fig, ax = plt.subplots(figsize=(2.4 + 1.4 * len(names), 3.6))
    bottom = [0.0] * len(names)
    for case, color in (("c1", "#4c72b0"), ("c2", "#dd8452"), ("c3", "#c44e52")):
        vals = [agreement[n][case] for n in names]
        ax.bar(names, vals, bottom=bottom, color=color, label=case.upper(), width=0.6)
        for i, v in enumerate(vals):
            if v > 0.04:
                ax.text(i, bottom[i] + v / 2, f"{100 * v:.0f}%", ha="center", va="center", fontsize=8, color="white")
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of items")
    ax.set_title("LLM category vs pre-group")
    ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fig5_activity(groups: dict[str, dict[str, list[float]]], labels: list[str], title: str, path: Path) -> Path:
    """groups: variant -> {"hr10": [5 values], "ndcg10": [...]}; two panels of grouped bars."""
    variants = list(groups)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    width = 0.8 / max(len(variants), 1)
    for ax, metric in zip(axes, ("hr10", "ndcg10")):
        for j, v in enumerate(variants):
            xs = [i + (j - (len(variants) - 1) / 2) * width for i in range(len(labels))]
            ax.bar(xs, groups[v][metric], width=width, label=v, color=COLORS.get(v))
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("user group by training length (ascending)")
        ax.set_ylabel(metric.upper().replace("HR", "HR@").replace("NDCG", "NDCG@"))
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def activity_groups(train_lengths: Any, ranks: Any, n_groups: int = 5) -> tuple[dict[str, list[float]], list[str]]:
    """Split users into n equal groups by training length; HR@10 and NDCG@10 (0-based ranks) per group."""
    import torch

    order = torch.argsort(train_lengths, stable=True)
    chunks = torch.tensor_split(order, n_groups)
    out: dict[str, list[float]] = {"hr10": [], "ndcg10": []}
    labels = []
    for idx in chunks:
        r = ranks[idx].double()
        hit = r < 10
        out["hr10"].append(float(hit.double().mean()))
        out["ndcg10"].append(float((hit.double() / torch.log2(r + 2)).mean()))
        lo, hi = int(train_lengths[idx].min()), int(train_lengths[idx].max())
        labels.append(f"{lo}-{hi}")
    return out, labels
