"""How much next-item signal do the item embeddings themselves carry? (a diagnostic, no training)

Scores every item for each user by its dot product with the user's *last* input item's embedding
(an item-to-item recommender with no sequence model) and reports full-ranking test NDCG@10 / HR@10,
history masked, for: the pretrain backbone's item table, the enhanced (LLM) embeddings as the
`tslrec` fusion sees them (standardized), a same-cluster indicator (the CI variant's signal) and, with
`--encode KEY`, the LM's reading of the item text with no SFT (the `train.source=text` table).

    python -m benchmarks.embedding_probe --cache-dir ~/.cache/tslrec --augment 2a9a0c74

Reads the runs from a tslrec cache by key prefix (`tslrec cache ls`); the augment run names its
group and pretrain runs through its inputs. Writes benchmarks/results/embedding-probe-<dataset>.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from benchmarks.common import RESULTS, command, provenance, write_json
from pipeline.cache import Cache
from stages.core.evaluate import history_ids, metrics, ranks_from_scores
from stages.core.sequences import Sequences


def item_to_item(table: torch.Tensor, seqs: Sequences, batch: int = 2048) -> dict:
    """Test metrics of scoring items by table[last input item] . table[item], history masked."""
    inputs, targets = seqs.prefix(1), seqs.test_targets()
    last = inputs.items[(inputs.offsets[1:] - 1).clamp(min=0)].long()       # (M,) latest input item
    ranks = torch.zeros(inputs.n_users, dtype=torch.int64)
    for b in range(0, inputs.n_users, batch):
        users = torch.arange(b, min(b + batch, inputs.n_users))
        scores = table[last[users]] @ table.T                               # (B, N+1)
        scores[:, 0] = -torch.inf
        ranks[users] = ranks_from_scores(scores, targets[users], history_ids(inputs, users))
    m = metrics(ranks, True)
    return {"ndcg10": m.ndcg10, "hr10": m.hr10}


def run_by_output(cache: Cache, digest: str):
    """The cached run that produced the artifact with this digest."""
    found = next((r for r in cache.runs() if any(ref.digest == digest for ref in r.outputs.values())), None)
    if found is None:
        raise SystemExit(f"error: no cached run produced artifact {digest[:12]} (was it garbage-collected?)")
    return found


def augment_chain(cache: Cache, prefix: str):
    """(augment, group, pretrain, data) runs: the augment run with this key prefix and its upstream."""
    aug = cache.find_run(prefix)
    if aug is None or aug.stage != "augment":
        raise SystemExit(f"error: no augment run with key prefix {prefix!r} in {cache.root} (see `tslrec cache ls`)")
    group = run_by_output(cache, aug.inputs["groups"])
    pretrain = run_by_output(cache, group.inputs["item_embeddings"])
    return aug, group, pretrain, run_by_output(cache, pretrain.inputs["sequences"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache-dir", type=Path, required=True)
    ap.add_argument("--augment", required=True, help="key prefix of an augment run")
    ap.add_argument("--encode", default=None, help="key prefix of an encode run: probe its text table too")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cache = Cache(args.cache_dir)
    aug, group, pretrain, data = augment_chain(cache, args.augment)
    seqs = Sequences.from_tensors(cache.get(data.outputs["sequences"]))
    enhanced = cache.get(aug.outputs["enhanced"])["embeddings"].float()    # (N+1, H)
    enhanced = enhanced - enhanced[1:].mean(0)
    enhanced = enhanced / enhanced[1:].std()                                # as train.enhanced_norm=standardize
    clusters = cache.get(group.outputs["groups"])["cluster_map"].long()
    same_cluster = torch.nn.functional.one_hot(clusters.clamp(min=0)).float()
    same_cluster[0] = 0
    same_cluster += 1e-4 * torch.randn(same_cluster.shape, generator=torch.Generator().manual_seed(0))  # break ties at random
    probes = {
        "pretrain item table": item_to_item(cache.get(pretrain.outputs["item_embeddings"])["weight"].float(), seqs),
        "enhanced embeddings (standardized)": item_to_item(enhanced, seqs),
        "same cluster": item_to_item(same_cluster, seqs),
    }
    enc = cache.find_run(args.encode) if args.encode else None
    if args.encode and (enc is None or enc.stage != "encode"):
        raise SystemExit(f"error: no encode run with key prefix {args.encode!r} in {cache.root}")
    if enc is not None:
        probes["text table, no SFT"] = item_to_item(cache.get(enc.outputs["text_table"])["embeddings"].float(), seqs)
    dataset = data.pipeline["data"]["dataset"]
    out = args.out or RESULTS / f"embedding-probe-{dataset}.json"
    sft = run_by_output(cache, aug.inputs["adapter"])      # the SFT that made the enhanced embeddings
    sft_result = {k: sft.result.get(k) for k in ("valid_mse", "valid_mse_mean_baseline", "seconds_per_epoch",
                                                 "instances_per_epoch")}
    write_json(out, {"command": command(), **provenance(threads=1),
                     "runs": {"augment": aug.key, "group": group.key, "pretrain": pretrain.key, "sft": sft.key,
                              **({"encode": enc.key} if enc is not None else {})},
                     "sft_result": {**sft_result, "peak_rss_mb": sft.peak_rss_mb, "wall_s": sft.wall_s},
                     "k": group.config["k"], "sft": aug.pipeline["sft"], "probes": probes}, indent=2)
    for name, m in probes.items():
        print(f"{name}: test NDCG@10 {m['ndcg10']:.4f} HR@10 {m['hr10']:.4f}", file=sys.stderr)
    print(out)


if __name__ == "__main__":
    main()
