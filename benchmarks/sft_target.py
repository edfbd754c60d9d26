"""Statistics (no training): how far the SFT prompt and the group target disagree under each `sft.target`.

The prompt shows a user's last `max_items` training items; `sft.target=all` counts every training
item into the target histogram, `sft.target=prompt` (the default) exactly the prompt's. For each
dataset: the users with more training items than the prompt holds (their two targets differ), and
the interactions counted by each choice, with the share that never reaches the prompt under "all".
Writes benchmarks/results/sft-target.json.

    python -m benchmarks.sft_target --data-dir ../shared/datasets --datasets ml-1m,beauty,yelp
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, command, provenance, write_json
from stages.data import read_lines, to_sequences
from stages.lm.tasks import last_items

FILES = {"beauty": "beauty/Beauty.txt", "ml-1m": "ml-1m/ml-1m.txt", "yelp": "yelp/Yelp.txt"}


def target_stats(path: Path, max_items: int) -> dict:
    seqs, _, _ = to_sequences(read_lines(path), path, 3)   # (sequences, user ids, item ids)
    train = seqs.train_part()
    shown = last_items(train, max_items)
    counted_all, counted_prompt = int(train.items.numel()), int(shown.items.numel())
    return {"users": train.n_users, "users_with_more_than_max_items": int((train.lengths > max_items).sum()),
            "interactions_counted_all": counted_all, "interactions_counted_prompt": counted_prompt,
            "share_counted_but_not_shown_all": round((counted_all - counted_prompt) / counted_all, 4),
            "share_counted_but_not_shown_prompt": 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--datasets", default="ml-1m,beauty,yelp")
    ap.add_argument("--max-items", type=int, default=50, help="sft.max_items")
    ap.add_argument("--out", type=Path, default=RESULTS / "sft-target.json")
    args = ap.parse_args()
    out = {"benchmark": "sft-target", "command": command(), **provenance(), "max_items": args.max_items,
           "datasets": {name: target_stats(args.data_dir / FILES[name], args.max_items) for name in args.datasets.split(",")}}
    write_json(args.out, out)
    print(json.dumps(out["datasets"], indent=1))


if __name__ == "__main__":
    main()
