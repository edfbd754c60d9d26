"""What item text costs the SFT: seconds per SFT epoch with sft.item_text=title at several text budgets
against none, MiniLM, measured in one run.

The real stage code (`sft.make_model`, `sft.fit_to_context`, `sft.train_step`) on a sample of the epoch's
own batches (`length_batches` with the stage's seed), the settings' steps interleaved so that load drift
hits them alike (benchmarks/efficiency.py's method). Item embeddings and groups are random and seeded:
timing only. Prompt positions per epoch are exact (prefix + each shown item's text tokens and embedding
+ suffix).

Why a cost-stratified sample: with titles, a step's seconds grow faster than its positions (attention
over up to 512 positions; before PromptLM trained eagerly on the CPU, also the attention dropout that kept
SDPA's fused kernel off: `--kernels auto own` times both), so a few
long batches hold much of the epoch's time. The batches are sorted by a proxy of their cost (padded
positions B*T*(1 + T/128)) and cut into --steps strata of equal total proxy; one batch is drawn at random
from each, and the epoch is estimated as the sum over strata of (batches in the stratum x the drawn
batch's seconds). That estimate is unbiased whatever the proxy (the proxy only narrows it); the long
tail falls in small strata, nearly enumerated. Run it on an idle machine: torch threads beyond the free
cores (another job running) make every step wait at the thread barriers, and the ratios mean nothing.

    python -m benchmarks.text_cost --dataset beauty --budgets 8 16 32 --threads 2

`--dropout-draws fast torch` times the stage's CPU dropout masks (stages/lm/dropout.py) against torch's own.

Writes benchmarks/results/text-cost-<dataset>.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.common import RESULTS, write_json
from benchmarks.efficiency import DATA, Job, header, interleaved, load, log, train_job
from schemas.runtime import Runtime
from schemas.sft import SftConfig
from stages.core.item_text import encode_item_text, read_items_tsv
from stages.core.sequences import length_batches
from stages.lm.dropout import FastDropout
from stages.sft import positions_of

ITEMS = {"beauty": "beauty/Beauty.items.tsv", "ml-1m": "ml-1m/ml-1m.items.tsv", "yelp": "yelp/Yelp.items.tsv"}
PROXY_T = 128   # positions at which the proxy's quadratic (attention) term equals its linear one


def cost_strata(costs: list[float], k: int) -> list[list[int]]:
    """Indices of `costs` sorted ascending and cut into at most k non-empty strata of about equal total cost."""
    order = sorted(range(len(costs)), key=lambda i: costs[i])
    total = sum(costs) or 1.0
    strata: list[list[int]] = [[] for _ in range(k)]
    run = 0.0
    for i in order:
        s = min(int(run / total * k), k - 1)          # stratum by the cost before this batch
        strata[s].append(i)
        run += costs[i]
    return [s for s in strata if s]


def estimate(strata: list[list[int]], seconds: list[float]) -> float:
    """Epoch seconds: sum over strata of (batches in it) x (the drawn batch's seconds)."""
    return sum(len(s) * t for s, t in zip(strata, seconds))


def prompt_positions(job: Job, model: torch.nn.Module) -> torch.Tensor:
    """(n,) real prompt positions of every instance of the epoch: prefix + suffix + each shown item's cost."""
    ids, counts = job.inputs(torch.arange(job.lengths.numel()))
    return model.template.lengths(torch.zeros_like(counts)) + positions_of(model, ids, counts)


def sampled_job(job: Job, model: torch.nn.Module, cfg: SftConfig, k: int, seed: int) -> tuple[Job, list[list[int]], dict]:
    """The job on one random batch from each of k cost strata of the epoch's batches; (job, strata, facts)."""
    pos = prompt_positions(job, model)
    batches = length_batches(pos, cfg.batch_size, torch.Generator().manual_seed(cfg.seed + 1))   # as sft.train: by positions
    padded = [(len(b), int(pos[b].max())) for b in batches]                            # (B, T) per batch
    strata = cost_strata([b * t * (1 + t / PROXY_T) for b, t in padded], k)
    gen = torch.Generator().manual_seed(seed)
    drawn = [s[int(torch.randint(len(s), (1,), generator=gen))] for s in strata]
    facts = {"positions_per_epoch": int(pos.sum()), "padded_positions_per_epoch": sum(b * t for b, t in padded),
             "mean_positions": float(pos.double().mean()), "max_positions": int(pos.max()),
             "strata_sizes": [len(s) for s in strata], "drawn_positions": [list(padded[i]) for i in drawn]}
    return replace(job, batches=[batches[i] for i in drawn], total_steps=len(batches)), strata, facts


def torch_dropout(model: torch.nn.Module) -> None:
    """Undo the SFT's fast dropout (stages/lm/dropout.py) in place: torch's nn.Dropout and eager attention."""
    for m in model.modules():
        if type(m) is FastDropout:
            m.__class__ = torch.nn.Dropout
    model.eager_kernel = "eager"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(ITEMS), default="beauty")
    ap.add_argument("--data-root", type=Path, default=Path(os.environ.get("TSLREC_DATA_DIR", "/work/shared/datasets")))
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--budgets", nargs="+", type=int, default=[8, 16, 32])
    ap.add_argument("--steps", type=int, default=12, help="cost strata per setting: one timed batch each")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="which batch each stratum draws")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kernels", nargs="+", choices=["auto", "own"], default=["auto"],
                    help="attention in training: auto, the stage's (eager on the CPU where the LM has attention "
                         "dropout); own, the model's own kernel (SDPA) throughout, as before that choice")
    ap.add_argument("--lm-dropouts", nargs="+", default=["model"],
                    help="sft.lm_dropout values to time ('model': the LM's own rates; 0: none, benchmarks/lm_dropout.py)")
    ap.add_argument("--dropout-draws", nargs="+", choices=["fast", "torch"], default=["fast"],
                    help="how the SFT's dropout masks are drawn: fast, the stage's on the CPU (stages/lm/dropout.py); "
                         "torch, torch's own dropout and eager attention, as before")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    rt = Runtime(progress=False, offline=True, threads=args.threads)
    seqs, weight, groups = load(args.dataset, args.data_root, 64, 16, 42)
    columns, texts = read_items_tsv(args.data_root / ITEMS[args.dataset], [str(i) for i in range(1, seqs.n_items + 1)])
    item_text = encode_item_text(columns, texts)
    settings = [(text, budget, kernel, rate, draws) for draws in args.dropout_draws for rate in args.lm_dropouts
                for kernel in args.kernels for text, budget in [("none", None)] + [("title", b) for b in args.budgets]]
    jobs, strata, facts = [], [], []
    for text, budget, kernel, rate, draws in settings:
        cfg = SftConfig(model=args.model, item_text=text, valid_fraction=0.0, lm_dropout=rate,
                        **({"item_text_tokens": budget} if budget else {}))
        job, model = train_job(cfg, seqs, weight, groups, rt, 1, item_text if budget else None)
        model.eager_training = kernel == "auto"
        if draws == "torch":
            torch_dropout(model)
        job, st, fa = sampled_job(job, model, cfg, args.steps, args.seed)
        jobs.append(job)
        strata.append(st)
        facts.append(fa)
    seconds = interleaved(jobs, args.warmup)   # the warm-up runs each job's first drawn batch once, untimed
    rows = []
    for (text, budget, kernel, rate, draws), job, st, fa, secs in zip(settings, jobs, strata, facts, seconds):
        epoch = estimate(st, secs)
        shown = float(job.lengths.double().mean())
        rows.append({"item_text": text, "item_text_tokens": budget, "attention": kernel, "lm_dropout": rate,
                     "dropout_draws": draws,
                     "steps_total": job.total_steps,
                     "step_seconds": secs, "seconds_per_epoch_extrapolated": epoch, "mean_items_shown": shown, **fa})
        log(f"item_text={text} tokens={budget} attention={kernel} lm_dropout={rate} draws={draws}: {epoch:.0f} s/epoch from {len(secs)} strata of "
            f"{job.total_steps} batches; {fa['mean_positions']:.1f} positions and {shown:.2f} items per prompt")
    for r in rows:
        same = [o for o in rows if o["lm_dropout"] == r["lm_dropout"] and o["dropout_draws"] == r["dropout_draws"]]
        none = next(n for n in same if n["item_text"] == "none" and n["attention"] == r["attention"])
        own = next((o for o in same if o["attention"] == "own" and o["item_text_tokens"] == r["item_text_tokens"]), None)
        model = next((o for o in rows if o["lm_dropout"] == "model" and o["attention"] == r["attention"]
                      and o["item_text_tokens"] == r["item_text_tokens"] and o["dropout_draws"] == r["dropout_draws"]), None)
        native = next((o for o in rows if o["dropout_draws"] == "torch" and o["attention"] == r["attention"]
                       and o["item_text_tokens"] == r["item_text_tokens"] and o["lm_dropout"] == r["lm_dropout"]), None)
        r["ratio_vs_none"] = r["seconds_per_epoch_extrapolated"] / none["seconds_per_epoch_extrapolated"]
        r["positions_ratio_vs_none"] = r["positions_per_epoch"] / none["positions_per_epoch"]
        r["ratio_vs_own_attention"] = r["seconds_per_epoch_extrapolated"] / own["seconds_per_epoch_extrapolated"] if own else None
        r["ratio_vs_lm_dropout_model"] = r["seconds_per_epoch_extrapolated"] / model["seconds_per_epoch_extrapolated"] if model else None
        r["ratio_vs_torch_draws"] = r["seconds_per_epoch_extrapolated"] / native["seconds_per_epoch_extrapolated"] if native else None
    record = {**header(args, sys.argv[1:], f"text-cost-{args.dataset}"),
              "bf16_native": bool(torch.cpu._is_avx512_bf16_supported()), "threads": args.threads,
              "model": args.model, "dataset": args.dataset, "data_file": str(args.data_root / DATA[args.dataset]),
              "load_avg_1m_before": load_before, "load_avg_1m_after": os.getloadavg()[0],
              "method": f"one random batch (seed {args.seed}) from each of {args.steps} strata of equal total cost proxy "
                        f"B*T*(1 + T/{PROXY_T}) over the epoch's batches, settings interleaved after an untimed warm-up; "
                        "epoch seconds = sum over strata of batches x the drawn batch's seconds; random embeddings and groups",
              "rows": rows, "wall_seconds": round(time.perf_counter() - t0, 1)}
    out = args.out or RESULTS / f"text-cost-{args.dataset}.json"
    write_json(out, record)
    print(out)


if __name__ == "__main__":
    main()
