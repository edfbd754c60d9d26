"""The `llamarec` stage: the LlamaRec baseline (Yue et al. 2023, arXiv:2311.02089; code github.com/Yueeeeeeee/LlamaRec).

Two stages. (1) A retriever proposes each user's top-k candidates (k = 20): here the `pretrain` stage's
SASRec (LlamaRec used LRURec; stages/lm/retriever.py). (2) A causal LM with LoRA reads a prompt of the
user's recent item titles and the lettered candidates' titles (stages/lm/rank_prompt.py) and scores
candidate j by the logit of its letter at the answer position (the verbalizer, stages/lm/verbalizer.py).

Training (only the training part of each sequence; validation and test items never reach it):
`train_instances='last'` (default) one instance per user, its training items but the last -> its last
training item; 'all' every prefix -> its next item, as LlamaRec. `train_candidates='retriever'`
(default) the retriever's top-k given the instance's history, instances whose target is not among them
skipped; 'random' the target + k-1 random items outside the history, redrawn each epoch, as LlamaRec
(which never trains on retriever candidates). Candidates are shuffled in training. Loss: cross-entropy
over the k letter logits (LlamaRec: the LM loss over the whole vocabulary on the answer letter and EOS;
restricting it to the letters is what its verbalizer reads at inference). The retriever was fitted on
these very targets, so with 'retriever' its training candidates hold the target more often than at test.
`user_fraction` < 1 trains on a seeded subsample of users (for an LM too slow for all of them).

Evaluation, LlamaRec's protocol made full-ranking: validation = training part -> validation item, test =
training part + validation item -> test item, candidates in the retriever's order. Only users whose
target is a candidate go through the LM (the others' rank cannot depend on it); every user's final
rank is `retriever.combined_ranks`'s, and metrics (stages/core/evaluate.py) average over all users, history
masked by default; `test_alt` repeats the test under the other setting with its own candidates.
The adapter of the epoch with the best validation NDCG@10 is kept (LlamaRec: the best of its
every-100-steps validations). Timing: `seconds_per_epoch` covers prompt building, forward, backward and
the optimizer step; peak memory is the runner's.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from schemas.llamarec import LlamaRecConfig, LlamaRecIn, LlamaRecOut, LlamaRecResult
from schemas.runtime import Runtime
from stages.core import checkpoint
from stages.core.evaluate import metrics
from stages.core.item_text import item_strings
from stages.core.precision import resolve
from stages.core.sequences import Sequences, length_batches
from stages.lm.load import is_encoder, load_lm, quiet_transformers
from stages.lm.model import pack_adapter
from stages.lm.precision import grad_scaler
from stages.lm.rank_prompt import RankPrompt, collate
from stages.lm.retriever import Inputs, Retrieval, combined_ranks, load_retriever, retrieve
from stages.lm.verbalizer import LETTERS, Verbalizer, candidate_logits, label_ids, output_rows

VERSION = 1
MODULES = ["stages.llamarec", "stages.core.evaluate", "stages.core.item_text", "stages.core.precision",
           "stages.core.sequences", "stages.lm.retriever", "stages.lm.rank_prompt", "stages.lm.verbalizer",
           "stages.lm.prompt", "stages.lm.load", "stages.lm.precision", "stages.lm.model", "stages.backbones",
           "stages.backbones.embedding", "stages.backbones.sasrec"]


def identity(cfg: LlamaRecConfig, rt: Runtime) -> dict[str, str]:
    """Hashed into the run's key next to the config: what the model name stands for (its weights)."""
    from stages.lm.identity import model_identity

    return {"model": model_identity(cfg.model, rt.cache_dir, rt.offline)}


@dataclass
class Ranker:
    """The LM side: LoRA-wrapped LM, verbalizer, prompt builder."""
    lm: Any
    verbalizer: Verbalizer
    prompt: RankPrompt
    settings: dict[str, Any]

    def logits(self, inp: Inputs, cands: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """(B, k) letter logits of instances `rows` with candidates cands[rows] (0 = empty slot)."""
        prompts = [self.prompt.tokens(history(inp, i), real(cands[i])) for i in rows.tolist()]
        ids, mask, last = collate(prompts)                                     # (B, T), (B, T), (B,)
        return candidate_logits(self.lm, self.verbalizer, ids, mask, last, cands[rows] != 0)

    def lengths(self, inp: Inputs, cands: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.prompt.length(history(inp, i), real(cands[i])) for i in rows.tolist()],
                            dtype=torch.int64)


def history(inp: Inputs, i: int) -> list[int]:
    return inp.items[int(inp.starts[i]):int(inp.ends[i])].tolist()


def real(cands: torch.Tensor) -> list[int]:
    return [c for c in cands.tolist() if c != 0]


def make_ranker(cfg: LlamaRecConfig, item_text: dict[str, torch.Tensor], n_rows: int, rt: Runtime) -> Ranker:
    from peft import LoraConfig, get_peft_model

    precision = resolve(cfg.precision, rt.device)
    lm, tok = load_lm(cfg.model, cache_dir=rt.cache_dir, offline=rt.offline, precision=precision, device=rt.device)
    if is_encoder(lm):
        raise ValueError(f"llamarec needs a causal LM (the answer letter is the next token); {cfg.model} is an encoder")
    strings = item_strings(item_text, cfg.item_text)
    if len(strings) != n_rows:
        raise ValueError(f"item text has {len(strings)} rows; the dataset has {n_rows} (N+1)")
    letters = label_ids(tok, cfg.n_candidates)
    rows, source = output_rows(lm, cfg.model, letters)
    context = int(getattr(lm.config, "max_position_embeddings", None) or 1 << 30)
    prompt = RankPrompt.build(tok, strings, cfg.n_candidates, cfg.max_history_items, cfg.item_text_tokens, context)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), bias="none")
    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(cfg.seed)
        peft_lm = get_peft_model(lm, lora)
    settings = {"labels": LETTERS[:cfg.n_candidates], "label_ids": letters, "verbalizer": source,
                "precision": precision, "target_modules": sorted(cfg.target_modules), "context": context}
    return Ranker(peft_lm.to(rt.device), Verbalizer(rows).to(rt.device), prompt, settings)


# -- instances --------------------------------------------------------------------------------------
def eval_inputs(seqs: Sequences) -> dict[str, Inputs]:
    """valid: training part -> validation item; test: training part + validation item -> test item."""
    out = {}
    for name, part, targets in (("valid", seqs.train_part(), seqs.valid_targets()),
                                ("test", seqs.prefix(1), seqs.test_targets())):
        out[name] = Inputs(part.items, part.offsets[:-1], part.offsets[1:], targets.long())
    return out


def train_inputs(seqs: Sequences, which: str) -> tuple[Inputs, torch.Tensor]:
    """(instances of the training part, their users): 'last' one per user with >= 2 training items
    (history = all but the last, target = the last); 'all' every prefix of >= 1 item -> its next item."""
    train = seqs.train_part()
    n = (train.lengths - 1).clamp(min=0)                                       # (M,) prefixes per user
    if which == "last":
        n = n.clamp(max=1)
    users = torch.repeat_interleave(torch.arange(train.n_users), n)            # (I,)
    k = torch.arange(users.numel()) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)   # 0..n_u-1
    starts = train.offsets[users]
    ends = train.offsets[users + 1] - 1 - k if which == "last" else starts + 1 + k
    return Inputs(train.items, starts, ends, train.items[ends].long()), users


def user_subsample(users: torch.Tensor, n_users: int, fraction: float, seed: int) -> torch.Tensor:
    """(I,) bool: the instances of a seeded `fraction` of the users (at least one)."""
    if fraction >= 1.0:
        return torch.ones(users.numel(), dtype=torch.bool)
    perm = torch.randperm(n_users, generator=torch.Generator().manual_seed(seed))
    chosen = torch.zeros(n_users, dtype=torch.bool)
    chosen[perm[:max(1, round(fraction * n_users))]] = True
    return chosen[users]


def random_candidates(inp: Inputs, k: int, n_items: int, gen: torch.Generator) -> torch.Tensor:
    """(I, k) int64: each target then k-1 distinct items drawn uniformly outside its history (LlamaRec)."""
    out = torch.zeros(len(inp), k, dtype=torch.int64)
    for i in range(len(inp)):
        seen = set(history(inp, i)) | {int(inp.targets[i])}
        picked = [int(inp.targets[i])]
        while len(picked) < k and len(seen) < n_items:
            for c in torch.randint(1, n_items + 1, (4 * k,), generator=gen).tolist():
                if c not in seen and len(picked) < k:
                    picked.append(c)
                    seen.add(c)
        out[i, :len(picked)] = torch.tensor(picked)
    return out


def shuffled(cands: torch.Tensor, targets: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(cands with each row's real candidates in random order (empty slots last), the target's slot (I,))."""
    keys = torch.rand(cands.shape, generator=gen) + (cands == 0).float() * 2   # empty slots sort last
    cands = cands.gather(1, keys.argsort(1))
    return cands, (cands == targets.unsqueeze(1)).float().argmax(1)


# -- training and evaluation ------------------------------------------------------------------------
@torch.no_grad()
def rank_split(ranker: Ranker, inp: Inputs, got: Retrieval, batch_size: int, rt: Runtime, desc: str
               ) -> tuple[torch.Tensor, int]:
    """(final ranks (U,), longest prompt): the LM scores the users whose target is a candidate."""
    was = ranker.lm.training
    ranker.lm.eval()
    rows = torch.nonzero((got.candidates == inp.targets.unsqueeze(1)).any(1)).flatten()
    scores = torch.zeros(got.candidates.shape)
    lengths = ranker.lengths(inp, got.candidates, rows)
    batches = length_batches(lengths, batch_size)
    with rt.track(desc, len(batches)) as bar:
        for b in batches:
            scores[rows[b]] = ranker.logits(inp, got.candidates, rows[b]).cpu()
            bar.advance(1)
    ranker.lm.train(was)
    return combined_ranks(got.ranks, got.candidates, inp.targets, scores), int(lengths.max()) if rows.numel() else 0


def train_step(ranker: Ranker, opt: torch.optim.Optimizer, inp: Inputs, cands: torch.Tensor, labels: torch.Tensor,
               idx: torch.Tensor, scaler: Any = None, micro: int | None = None) -> float:
    """One optimisation step on instances idx: mean cross-entropy over the k letter logits, its gradient
    accumulated over micro-batches of `micro` prompts (the same step in less memory)."""
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for part in idx.split(micro or idx.numel()):
        logits = ranker.logits(inp, cands, part)                                # (b, k)
        loss = F.cross_entropy(logits, labels[part].to(logits.device)) * (part.numel() / idx.numel())
        (scaler.scale(loss) if scaler is not None else loss).backward()
        total += float(loss.detach())
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    return total


def trainable_state(lm: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in lm.named_parameters() if p.requires_grad}


def train(cfg: LlamaRecConfig, seqs: Sequences, ranker: Ranker, retriever: Any, rt: Runtime) -> dict[str, Any]:
    """Fit the LoRA adapter; keep the best validation epoch's. -> the loop's bookkeeping."""
    inp, users = train_inputs(seqs, cfg.train_instances)
    inp = inp.subset(torch.nonzero(user_subsample(users, seqs.n_users, cfg.user_fraction, cfg.seed)).flatten())
    skipped, fixed = 0, None
    if cfg.train_candidates == "retriever":
        fixed = retrieve(retriever, inp, cfg.n_candidates, cfg.mask_history).candidates   # (I, k)
        keep = (fixed == inp.targets.unsqueeze(1)).any(1)
        skipped, inp, fixed = int((~keep).sum()), inp.subset(torch.nonzero(keep).flatten()), fixed[keep]
    if len(inp) == 0:
        raise ValueError("no llamarec training instance (no target among its candidates); raise n_candidates "
                         "or use train_candidates=random")
    valid = eval_inputs(seqs)["valid"]
    valid_got = retrieve(retriever, valid, cfg.n_candidates, cfg.mask_history)
    params = [p for p in ranker.lm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    scaler = grad_scaler(ranker.settings["precision"], rt.device)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    log = {"epoch_seconds": [], "losses": [], "best": (-1.0, 0, None, None), "tokens": 0.0, "longest": 0}
    n_steps = -(-len(inp) // cfg.batch_size)
    with torch.random.fork_rng(devices=[]), rt.track("llamarec", cfg.epochs * n_steps) as bar:
        torch.manual_seed(cfg.seed)                                             # LoRA dropout
        done = 0
        if (resumed := checkpoint.restore(rt, "llamarec", ranker.lm, opt, [gen])) is not None:   # after a crash
            done, log = resumed
            bar.advance(done * n_steps)
        for epoch in range(done + 1, cfg.epochs + 1):
            ranker.lm.train()
            t0 = time.perf_counter()
            base = fixed if fixed is not None else random_candidates(inp, cfg.n_candidates, seqs.n_items, gen)
            cands, labels = shuffled(base, inp.targets, gen)
            lengths = ranker.lengths(inp, cands, torch.arange(len(inp)))
            total = 0.0
            for idx in length_batches(lengths, cfg.batch_size, gen):
                total += train_step(ranker, opt, inp, cands, labels, idx, scaler, cfg.micro_batch_size) * idx.numel()
                bar.advance(1, loss=total / len(inp))
            log["epoch_seconds"].append(time.perf_counter() - t0)
            log["losses"].append(total / len(inp))
            log["tokens"], log["longest"] = float(lengths.double().mean()), max(log["longest"], int(lengths.max()))
            ranks, longest = rank_split(ranker, valid, valid_got, cfg.eval_batch_size or cfg.batch_size, rt,
                                        f"llamarec valid {epoch}")
            ndcg = metrics(ranks, cfg.mask_history).ndcg10
            if ndcg > log["best"][0]:
                log["best"] = (ndcg, epoch, trainable_state(ranker.lm), ranks)
            log["longest"] = max(log["longest"], longest)
            checkpoint.save(rt, "llamarec", epoch, ranker.lm, opt, [gen], log, trainable_only=True)
    ranker.lm.load_state_dict(log["best"][2], strict=False)
    return {**log, "instances": len(inp), "skipped": skipped, "valid_got": valid_got}


def run(cfg: LlamaRecConfig, inp: LlamaRecIn, rt: Runtime) -> LlamaRecOut:
    t_start = time.perf_counter()
    seqs = Sequences.from_tensors(inp.sequences)
    splits = eval_inputs(seqs)
    retriever, heads = load_retriever(inp.backbone, splits["valid"], inp.ranks["valid"].long())
    retriever.to(rt.device)
    ranker = make_ranker(cfg, inp.item_text, seqs.n_items + 1, rt)
    log = train(cfg, seqs, ranker, retriever, rt)
    batch = cfg.eval_batch_size or cfg.batch_size
    test_got = retrieve(retriever, splits["test"], cfg.n_candidates, cfg.mask_history)
    test_ranks, longest = rank_split(ranker, splits["test"], test_got, batch, rt, "llamarec test")
    alt = None
    if cfg.test_alt:
        alt_got = retrieve(retriever, splits["test"], cfg.n_candidates, not cfg.mask_history)
        alt_ranks, alt_longest = rank_split(ranker, splits["test"], alt_got, batch, rt, "llamarec test_alt")
        alt, longest = metrics(alt_ranks, not cfg.mask_history), max(longest, alt_longest)
    valid_got, valid_ranks = log["valid_got"], log["best"][3]
    result = LlamaRecResult(
        model=cfg.model, retriever=f"pretrain sasrec (dim {retriever.cfg.dim}, {retriever.cfg.layers} layers, "
                                   f"{heads} heads, max_len {retriever.max_len})",
        valid=metrics(valid_ranks, cfg.mask_history), test=metrics(test_ranks, cfg.mask_history), test_alt=alt,
        retriever_valid=metrics(valid_got.ranks, cfg.mask_history), retriever_test=metrics(test_got.ranks, cfg.mask_history),
        recall_valid=hit_rate(valid_got, splits["valid"]), recall_test=hit_rate(test_got, splits["test"]),
        train_instances=log["instances"], skipped_instances=log["skipped"], user_fraction=cfg.user_fraction,
        epoch_losses=log["losses"], best_epoch=log["best"][1], seconds_per_epoch=statistics.median(log["epoch_seconds"]),
        train_seconds=round(time.perf_counter() - t_start, 3), mean_prompt_tokens=log["tokens"],
        max_prompt_tokens=max(log["longest"], longest), trainable_params=sum(p.numel() for p in ranker.lm.parameters() if p.requires_grad),
        settings={**ranker.settings, "retriever_heads": heads, "train_instances": cfg.train_instances,
                  "train_candidates": cfg.train_candidates},
    )
    adapter_cfg = cfg.model_copy(update={"precision": ranker.settings["precision"]}).model_dump(mode="json")
    return LlamaRecOut(result=result, artifacts={
        "adapter": pack_adapter(ranker.lm, adapter_cfg),
        "ranks": {"valid": valid_ranks.contiguous(), "test": test_ranks.contiguous()},
    })


def hit_rate(got: Retrieval, inp: Inputs) -> float:
    return float((got.candidates == inp.targets.unsqueeze(1)).any(1).double().mean())
