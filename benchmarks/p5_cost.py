"""Seconds per P5 and POD training epoch on one dataset, in the most faithful form that runs here; sampled steps.

Neither baseline is run (`not_run` in the output): both fine-tune a *pretrained* T5-small, and no T5
weights nor its SentencePiece tokenizer can be installed on this machine. What is timed instead:
transformers' T5ForConditionalGeneration with t5-small's configuration (d_model 512, 6 encoder + 6 decoder
layers, 8 heads, d_ff 2048, vocabulary 32128; ~60M parameters), randomly initialised, on the real
training prompts of each method built from our data, tokenized by MiniLM's packaged WordPiece (30.5k
tokens) as a stand-in for T5's SentencePiece (32k): both cut an item id such as "1034" into ~2 pieces
and a common word into one. Step cost (teacher-forced cross-entropy over the target's tokens, backward,
AdamW) depends on those lengths and on the model's shape, not on its weights, so it is the cost of the
real thing; from-scratch *quality* would not be.

P5 (Geng et al. 2022; github.com/jeykigung/P5, scripts/pretrain_P5_small_beauty.sh): batch 32, AdamW lr
1e-3, inputs cut at 512 tokens, 10 epochs, fp32. Sequential task family only (P5 trains it together
with rating, explanation, review and traditional families, whose review text our files lack). Per epoch
each user yields P5's sample numbers (5, 5, 10): 5 direct next-item prompts, 5 candidate prompts (the
history and 100 shuffled candidates: the target + 99 items the user never bought), 10 yes/no prompts
(the target or a random unbought item, half each). History: a random segment of the training part
(starting at one of its first 3 items, ending before the validation item), ids as numbers, user as
user_<id>, joined by ' , ' or ' -> '. Random batches (no length bucketing), padded to their longest.

POD (Li et al. 2023; github.com/lileipisces/POD, beauty.sh, utils.py): T5-small with a few learned
prompt vectors per task, batch 64 mixing explanation, sequential and top-N instances 1:1:1, lr 5e-4.
Its epoch is counted in explanation samples (review text again); here one epoch = every user once as a
sequential instance ('user_u item_i item_j ...', a random training segment of up to 21 items -> its
last) and once as a top-N instance (100 shuffled candidates: a training item + 99 unbought), in batches
of 64 (the explanation third left out). The prompt vectors (a handful of positions) are not modelled.

A step is timed as micro-batches of --micro-batch rows (gradient accumulation), each padded to the whole
batch's longest input and target: the arithmetic of one padded batch, in memory this shared machine has.

    nice -n 10 python -m benchmarks.p5_cost --dataset beauty --threads 1

Writes benchmarks/results/p5-cost-<dataset>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from benchmarks.common import RESULTS, command, provenance, write_json  # noqa: E402
from benchmarks.llamarec_cost import DATA, log  # noqa: E402
from pipeline.memory import track_peak  # noqa: E402
from schemas.data import DataConfig, DataIn  # noqa: E402
from schemas.runtime import Runtime  # noqa: E402
from stages import data  # noqa: E402
from stages.core.sequences import Sequences  # noqa: E402

# P5's sequential prompts (its paper's appendix / all_amazon_templates.py), one group per sample number.
DIRECT = ["Given the following purchase history of user_{} : \n {} \n predict next possible item to be purchased by the user ?",
          "I find the purchase history list of user_{} : \n {} \n I wonder what is the next item to recommend to the user . Can you help me decide ?",
          "Here is the purchase history list of user_{} : \n {} \n try to recommend next item to the user"]
CANDIDATES = ["Here is the purchase history of user_{} : \n {} \n Select the next possible item likely to be purchased by the user "
              "from the following candidates : \n {}",
              "Based on the purchase history of user_{} : \n {} \n Choose the next possible purchased item from the following candidates : \n {}"]
YES_NO = ["user_{} has the following purchase history : \n {} \n does the user likely to buy {} next ?"]
T5_SMALL = dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8,
                relative_attention_num_buckets=32, dropout_rate=0.1, feed_forward_proj="relu", is_encoder_decoder=True,
                decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
EOS = 1


def unbought(rng: random.Random, seen: set[int], n_items: int, k: int) -> list[int]:
    out: set[int] = set()
    while len(out) < k:
        i = rng.randint(1, n_items)
        if i not in seen:
            out.add(i)
    return list(out)


def p5_prompts(seqs: Sequences, rng: random.Random) -> list[tuple[str, str]]:
    """(source, target) of one P5 epoch of the sequential family: 20 per user (5 direct, 5 candidates, 10 yes/no)."""
    out = []
    for u in range(seqs.n_users):
        items = seqs.user(u).tolist()
        train, seen = items[:-2], set(items)
        for group, n in ((DIRECT, 5), (CANDIDATES, 5), (YES_NO, 10)):
            for _ in range(n):
                end = rng.randint(1, len(train) - 1) if len(train) > 1 else 0    # target position
                start = rng.randint(0, min(2, max(end - 1, 0)))
                hist, target = [str(i) for i in train[start:end] or train[:1]], str(train[end])
                sep = " , " if rng.random() > 0.5 else " -> "
                template = rng.choice(group)
                if group is DIRECT:
                    out.append((template.format(u + 1, sep.join(hist)), target))
                elif group is CANDIDATES:
                    cands = [str(c) for c in unbought(rng, seen, seqs.n_items, 99)] + [target]
                    rng.shuffle(cands)
                    out.append((template.format(u + 1, sep.join(hist), " , ".join(cands)), target))
                else:
                    yes = rng.random() > 0.5
                    item = target if yes else str(unbought(rng, seen, seqs.n_items, 1)[0])
                    out.append((template.format(u + 1, sep.join(hist), item), "yes" if yes else "no"))
    return out


def pod_prompts(seqs: Sequences, rng: random.Random) -> list[tuple[str, str]]:
    """(source, target): every user once as a sequential and once as a top-N instance (POD's utils.py samplers)."""
    out = []
    for u in range(seqs.n_users):
        items = seqs.user(u).tolist()
        train, seen = items[:-2], set(items)
        start = rng.randint(0, max(len(items) - 4, 0))
        end = rng.randint(min(start + 1, len(items) - 3), len(items) - 3)
        seg = [str(i) for i in items[start:end + 1]][-21:]
        out.append((f"user_{u + 1} item_" + " item_".join(seg[:-1] or seg), seg[-1]))
        positive = str(rng.choice(train))
        cands = [str(c) for c in unbought(rng, seen, seqs.n_items, 99)] + [positive]
        rng.shuffle(cands)
        out.append((f"Which item of the following to recommend for user_{u + 1}? item_" + " item_".join(cands), positive))
    return out


def encode(tok, pairs: list[tuple[str, str]], keep: set[int], max_len: int, chunk: int = 8192
           ) -> tuple[torch.Tensor, torch.Tensor, dict[int, tuple[list[int], list[int]]]]:
    """(source lengths (n,), target lengths (n,), {i: (source ids, target ids)} for i in keep), tokenized in chunks
    (all 447k P5 prompts' ids at once would take ~10 GB of Python lists); sources cut at max_len, both end in EOS."""
    src_len, tgt_len, kept = torch.zeros(len(pairs), dtype=torch.int64), torch.zeros(len(pairs), dtype=torch.int64), {}
    for lo in range(0, len(pairs), chunk):
        part = pairs[lo:lo + chunk]
        src = tok([s for s, _ in part], add_special_tokens=False)["input_ids"]
        tgt = tok([t for _, t in part], add_special_tokens=False)["input_ids"]
        for j, (a, b) in enumerate(zip(src, tgt)):
            a, b = a[:max_len - 1] + [EOS], b + [EOS]
            src_len[lo + j], tgt_len[lo + j] = len(a), len(b)
            if lo + j in keep:
                kept[lo + j] = (a, b)
    return src_len, tgt_len, kept


def pad(rows: list[list[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    width = width or max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    return ids, (ids != 0).long()


def time_method(name: str, pairs, tok, args, batch_size: int, lr: float) -> dict:
    from transformers import T5Config, T5ForConditionalGeneration

    order = list(range(len(pairs)))
    random.Random(args.seed).shuffle(order)                     # random batches, as both methods draw them
    n_batches = -(-len(order) // batch_size)
    picks = [order[i * batch_size:(i + 1) * batch_size] for i in range(args.warmup + args.steps)]
    src_len, tgt_len, kept = encode(tok, pairs, {i for rows in picks for i in rows}, 512)
    torch.manual_seed(args.seed)
    model = T5ForConditionalGeneration(T5Config(**T5_SMALL)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)

    def step(rows: list[int]) -> None:
        """One optimizer step on the batch `rows`, its gradient accumulated over micro-batches padded to the
        whole batch's widths (the same arithmetic as one padded batch, in less memory)."""
        src_w, tgt_w = int(src_len[rows].max()), int(tgt_len[rows].max())
        opt.zero_grad(set_to_none=True)
        for lo in range(0, len(rows), args.micro_batch):
            part = rows[lo:lo + args.micro_batch]
            ids, mask = pad([kept[i][0] for i in part], src_w)
            labels, _ = pad([kept[i][1] for i in part], tgt_w)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels.masked_fill(labels == 0, -100)).loss
            (loss * len(part) / len(rows)).backward()
        opt.step()

    for rows in picks[:args.warmup]:
        step(rows)
    secs, widths = [], []
    for rows in picks[args.warmup:]:
        t0 = time.perf_counter()
        step(rows)
        secs.append(time.perf_counter() - t0)
        widths.append(int(src_len[rows].max()))
        log(f"{name}: step {len(secs)}/{args.steps} {secs[-1]:.1f} s (input width {widths[-1]})")
    return {"instances": len(pairs), "batch_size": batch_size, "micro_batch": args.micro_batch, "lr": lr, "steps_per_epoch": n_batches,
            "parameters": sum(p.numel() for p in model.parameters()), "mean_input_tokens": float(src_len.double().mean()),
            "max_input_tokens": int(src_len.max()), "mean_target_tokens": float(tgt_len.double().mean()),
            "measured_steps": len(secs), "step_seconds": secs, "step_input_widths": widths,
            "step_seconds_mean": statistics.mean(secs), "epoch_seconds_extrapolated": statistics.mean(secs) * n_batches}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(DATA), default="beauty")
    ap.add_argument("--data-root", type=Path, default=Path("/work/shared/datasets"))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--micro-batch", type=int, default=8, help="rows per forward/backward (memory: 32 x 512 tokens "
                    "of T5's eager attention hold >9 GB)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default="p5,pod")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    from stages.lm.load import _tokenizer, package_path

    rt = Runtime(progress=False, offline=True, threads=args.threads)
    out = data.run(DataConfig(dataset=args.dataset), DataIn(path=(args.data_root / DATA[args.dataset]).with_suffix(".txt")), rt)
    seqs = Sequences.from_tensors(out.artifacts["sequences"])
    tok = _tokenizer(package_path("minilm-l6"))
    results = {}
    with track_peak("cpu") as peak:
        for method in args.methods.split(","):
            rng = random.Random(args.seed)
            if method == "p5":
                results["p5"] = time_method("p5", p5_prompts(seqs, rng), tok, args, 32, 1e-3)
            elif method == "pod":
                results["pod"] = time_method("pod", pod_prompts(seqs, rng), tok, args, 64, 5e-4)
            else:
                raise SystemExit(f"unknown method {method!r}")
    report = {
        "benchmark": "p5-cost", "command": command(argv), **provenance(threads=args.threads), "dataset": args.dataset, "precision": "fp32", "results": results,
        "peak_rss_mb": peak.rss_mb, "peak_rss_exact": peak.rss_exact, "wall_seconds": round(time.perf_counter() - t_start, 1),
        "not_run": ("P5 and POD fine-tune a pretrained T5-small (and use its SentencePiece tokenizer); neither can be "
                    "installed here. The timing uses the t5-small architecture, randomly initialised, on each method's "
                    "real prompts (MiniLM WordPiece as the tokenizer stand-in). To run them: the t5-small checkpoint and "
                    "tokenizer (e.g. a local HF folder), P5's full multi-task data (reviews, explanations) and a GPU; "
                    "P5: 10 epochs of all five task families; POD: its pretrain.py then seq.py/topn.py."),
        "note": ("No full epoch was run: sampled random batches after a warm-up, mean step x steps per epoch. P5: sequential "
                 "family only (20 prompts per user: sample numbers 5/5/10); POD: sequential + top-N once per user."),
    }
    path = args.out or RESULTS / f"p5-cost-{args.dataset}.json"
    write_json(path, report)
    for m, r in results.items():
        log(f"{m}: {r['step_seconds_mean']:.1f} s/step x {r['steps_per_epoch']} steps = {r['epoch_seconds_extrapolated'] / 3600:.1f} h/epoch")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
