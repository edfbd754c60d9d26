"""Seconds per LlamaRec training epoch (and evaluation pass) on one dataset, from a few sampled steps.

The real stage code (`stages.llamarec`: prompt building, the LoRA LM's forward, the letter verbalizer,
cross-entropy, backward, AdamW) on --steps batches of real prompts spread evenly over the epoch's
batches sorted by length, after --warmup untimed ones; the epoch is extrapolated (a) as mean step
seconds x steps per epoch and (b) by tokens: measured seconds per prompt token x the epoch's exact
token count. The same for --eval-steps inference batches (no gradient) of the validation users whose
item is among their candidates (the only ones the LM reads).

Epoch sizes are exact for four recipes: train_instances last/all x train_candidates retriever/random
(LlamaRec's own recipe is all + random; the stage's default is last + retriever). The retriever decides
how many instances survive the skip rule and how many users the LM must rank:
- --backbone FILE --ranks FILE: a trained pretrain SASRec's 'backbone' and 'ranks' artifacts (the
  rebuild is checked against its validation ranks, as in the stage);
- without them: a randomly initialised SASRec. Step cost does not depend on candidate quality, but
  its candidates almost never hold the target: the 'retriever' recipes then count ~0 instances.
Timed prompts are those of the default recipe when it has instances, else LlamaRec's random candidates
(same 20-candidate layout, same cost per token).

    nice -n 10 python -m benchmarks.llamarec_cost --dataset beauty --threads 1 \\
        --backbone backbone.safetensors --ranks ranks.safetensors

Writes benchmarks/results/llamarec-cost-<dataset>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from benchmarks.common import RESULTS, command, provenance, write_json  # noqa: E402
from pipeline.memory import track_peak  # noqa: E402
from schemas.backbone import BackboneConfig  # noqa: E402
from schemas.data import DataConfig, DataIn  # noqa: E402
from schemas.llamarec import LlamaRecConfig  # noqa: E402
from schemas.runtime import Runtime  # noqa: E402
from schemas.text import TextConfig, TextIn  # noqa: E402
from stages import data, llamarec, text  # noqa: E402
from stages.backbones import build  # noqa: E402
from stages.backbones.embedding import ItemEmbedding  # noqa: E402
from stages.lm.retriever import Inputs, load_retriever, retrieve  # noqa: E402
from stages.core.sequences import Sequences, length_batches  # noqa: E402

DATA = {"beauty": "beauty/Beauty", "ml-1m": "ml-1m/ml-1m", "yelp": "yelp/Yelp"}


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def load_dataset(name: str, root: Path, rt: Runtime) -> tuple[Sequences, dict]:
    stem = root / DATA[name]
    out = data.run(DataConfig(dataset=name), DataIn(path=stem.with_suffix(".txt")), rt)
    items = text.run(TextConfig(), TextIn(path=Path(f"{stem}.items.tsv"), item_ids=out.artifacts["item_ids"]), rt)
    return Sequences.from_tensors(out.artifacts["sequences"]), items.artifacts["item_text"]


def make_retriever(args: argparse.Namespace, seqs: Sequences) -> tuple[torch.nn.Module, str]:
    if args.backbone is not None:
        state, ranks = load_file(str(args.backbone)), load_file(str(args.ranks))
        model, heads = load_retriever(state, llamarec.eval_inputs(seqs)["valid"], ranks["valid"].long())
        return model, f"trained pretrain SASRec from {args.backbone.name} ({heads} heads; validation ranks reproduced)"
    torch.manual_seed(args.seed)
    model = build(BackboneConfig(name="sasrec"), ItemEmbedding(seqs.n_items, 64)).eval()
    return model, "randomly initialised SASRec (seeded): step cost does not depend on its candidates"


def recipe_sizes(cfg: LlamaRecConfig, ranker: llamarec.Ranker, seqs: Sequences, retriever, gen) -> dict:
    """Instances and exact prompt tokens per epoch of each recipe; the default recipe's timing inputs."""
    out, timing = {}, None
    for which in ("last", "all"):
        inp, _ = llamarec.train_inputs(seqs, which)
        t0 = time.perf_counter()
        got = retrieve(retriever, inp, cfg.n_candidates, cfg.mask_history, batch_size=1024).candidates
        hit = (got == inp.targets.unsqueeze(1)).any(1)
        log(f"retrieval of {len(inp)} '{which}' instances: {time.perf_counter() - t0:.0f} s, {int(hit.sum())} hit")
        rnd = llamarec.random_candidates(inp, cfg.n_candidates, seqs.n_items, gen)
        for source, cands, keep in (("retriever", got, hit), ("random", rnd, torch.ones_like(hit))):
            rows = torch.nonzero(keep).flatten()
            lengths = ranker.lengths(inp, cands, rows)
            out[f"{which}+{source}"] = {"instances": int(rows.numel()), "tokens": int(lengths.sum()),
                                        "mean_prompt_tokens": float(lengths.double().mean()) if rows.numel() else 0.0,
                                        "max_prompt_tokens": int(lengths.max()) if rows.numel() else 0}
            enough = rows.numel() >= 4 * cfg.batch_size          # the default recipe's own prompts when it has them
            if which == "last" and timing is None and (enough or source == "random"):
                timing = (f"{which}+{source}", inp.subset(rows), cands[rows])
    return {"recipes": out, "timing": timing}


def sample(lengths: torch.Tensor, batch_size: int, k: int, gen: torch.Generator) -> tuple[list[torch.Tensor], int]:
    """(k batches spread evenly over the epoch's batches sorted by longest prompt, batches per epoch)."""
    batches = length_batches(lengths, batch_size, gen)
    by_len = sorted(batches, key=lambda b: (int(lengths[b].max()), b.numel()))
    pick = sorted({round(i * (len(by_len) - 1) / max(k - 1, 1)) for i in range(k)}) if k > 1 else [len(by_len) // 2]
    return [by_len[i] for i in pick], len(batches)


def timed(step, batches: list[torch.Tensor], warmup: int) -> list[float]:
    for b in batches[:warmup]:
        step(b)
    out = []
    for b in batches:
        t0 = time.perf_counter()
        step(b)
        out.append(time.perf_counter() - t0)
    return out


def measure_train(cfg, ranker, inp: Inputs, cands: torch.Tensor, args, gen) -> dict:
    cands, labels = llamarec.shuffled(cands, inp.targets, gen)
    lengths = ranker.lengths(inp, cands, torch.arange(len(inp)))
    batches, n_batches = sample(lengths, cfg.batch_size, args.steps, gen)
    opt = torch.optim.AdamW([p for p in ranker.lm.parameters() if p.requires_grad], lr=cfg.lr)
    ranker.lm.train()
    secs = timed(lambda b: llamarec.train_step(ranker, opt, inp, cands, labels, b, micro=cfg.micro_batch_size),
                 batches, args.warmup)
    tokens = [int(lengths[b].sum()) for b in batches]
    return {"batch_size": cfg.batch_size, "micro_batch_size": cfg.micro_batch_size, "measured_steps": len(secs), "step_seconds": secs,
            "step_seconds_mean": statistics.mean(secs), "step_prompt_tokens": tokens,
            "seconds_per_token": sum(secs) / sum(tokens), "sampled_from_batches": n_batches}


@torch.no_grad()
def measure_eval(cfg, ranker, inp: Inputs, got, args) -> dict:
    rows = torch.nonzero((got.candidates == inp.targets.unsqueeze(1)).any(1)).flatten()
    if rows.numel() == 0:   # a random retriever: time the retriever's top-k prompts of any users instead
        rows = torch.arange(min(len(inp), 64 * args.eval_batch_size))
    lengths = ranker.lengths(inp, got.candidates, rows)
    batches, _ = sample(lengths, args.eval_batch_size, args.eval_steps, torch.Generator().manual_seed(0))
    ranker.lm.eval()
    secs = timed(lambda b: ranker.logits(inp, got.candidates, rows[b]), batches, 1)
    tokens = [int(lengths[b].sum()) for b in batches]
    return {"batch_size": args.eval_batch_size, "measured_batches": len(secs), "batch_seconds": secs,
            "seconds_per_token": sum(secs) / sum(tokens), "mean_prompt_tokens": float(lengths.double().mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(DATA), default="beauty")
    ap.add_argument("--data-root", type=Path, default=Path("/work/shared/datasets"))
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--backbone", type=Path, default=None, help="a pretrain 'backbone' artifact (safetensors)")
    ap.add_argument("--ranks", type=Path, default=None, help="the same run's 'ranks' artifact")
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--micro-batch-size", type=int, default=2, help="prompts per forward/backward (memory)")
    ap.add_argument("--eval-batch-size", type=int, default=12)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--eval-steps", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=None, help="where the GGUF model is converted (default: tslrec's)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if (args.backbone is None) != (args.ranks is None):
        ap.error("--backbone and --ranks go together")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    rt = Runtime(progress=False, offline=True, threads=args.threads, **({"cache_dir": args.cache_dir} if args.cache_dir else {}))
    cfg = LlamaRecConfig(model=args.model, batch_size=args.batch_size, micro_batch_size=args.micro_batch_size)
    with track_peak("cpu") as peak:
        seqs, item_text = load_dataset(args.dataset, args.data_root, rt)
        retriever, retriever_note = make_retriever(args, seqs)
        ranker = llamarec.make_ranker(cfg, item_text, seqs.n_items + 1, rt)
        gen = torch.Generator().manual_seed(args.seed)
        sizes = recipe_sizes(cfg, ranker, seqs, retriever, gen)
        name, inp, cands = sizes["timing"]
        log(f"timing {args.steps} training steps (+{args.warmup} warm-up) on '{name}' prompts")
        train = measure_train(cfg, ranker, inp, cands, args, gen)
        evals = {split: retrieve(retriever, x, cfg.n_candidates, cfg.mask_history, batch_size=1024)
                 for split, x in llamarec.eval_inputs(seqs).items()}
        infer = measure_eval(cfg, ranker, llamarec.eval_inputs(seqs)["valid"], evals["valid"], args)
    recipes = {}
    for key, r in sizes["recipes"].items():
        steps = -(-r["instances"] // cfg.batch_size)
        recipes[key] = {**r, "steps": steps, "epoch_seconds_by_steps": steps * train["step_seconds_mean"],
                        "epoch_seconds_by_tokens": r["tokens"] * train["seconds_per_token"]}
    split_users = {}
    for split, got in evals.items():
        x = llamarec.eval_inputs(seqs)[split]
        hit = int((got.candidates == x.targets.unsqueeze(1)).any(1).sum())
        split_users[split] = {"users": len(x), "lm_users": hit, "recall": hit / len(x),
                              "seconds_by_tokens": hit * infer["mean_prompt_tokens"] * infer["seconds_per_token"]}
    report = {
        "benchmark": "llamarec-cost", "command": command(argv), **provenance(threads=args.threads), "dataset": args.dataset, "model": args.model, "config": cfg.model_dump(mode="json"),
        "settings": ranker.settings, "retriever": retriever_note, "timed_recipe": name,
        "train": train, "recipes": recipes, "eval": {**infer, "splits": split_users},
        "peak_rss_mb": peak.rss_mb, "peak_rss_exact": peak.rss_exact,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "note": ("No full epoch was run: sampled steps, extrapolated. 'recipes' keys are train_instances+train_candidates; "
                 "'last+retriever' is the stage's default, 'all+random' LlamaRec's own. Evaluation: the LM reads only the "
                 "users whose target is among their candidates (eval.splits.*.lm_users); test_alt adds one more test pass."),
    }
    out = args.out or RESULTS / f"llamarec-cost-{args.dataset}.json"
    write_json(out, report)
    d = recipes["last+retriever"]
    log(f"{args.model}: {train['step_seconds_mean']:.1f} s/step; default recipe {d['instances']} instances = "
        f"{d['epoch_seconds_by_tokens'] / 3600:.2f} h/epoch (by tokens); LlamaRec's all+random "
        f"{recipes['all+random']['epoch_seconds_by_tokens'] / 3600:.1f} h/epoch")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
