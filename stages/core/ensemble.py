"""`ensemble` fusion: late fusion of two separately trained models' scores (EnsRec-style, 2025).

Member A is a base model (plain ID table). Member B is trained on its own: the fusion
`train.ensemble_member` over the frozen table of `train.source`, or, with source 'none' (the control),
another base model with seed + CONTROL_SEED_OFFSET. Each member's scores become log-probabilities over
items 1..N, and a user's ranking uses (1 - w) log p_A + w log p_B. The weight w is chosen on
VALIDATION NDCG@10 from WEIGHTS (ties go to the smaller w, i.e. towards the base model); the test
ranks use that w only. w = 0 is the base model exactly, so the mix never loses to it on validation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from schemas.runtime import Runtime
from schemas.train import TrainConfig
from stages.backbones import Backbone
from stages.core.evaluate import history_ids, metrics, ranks_from_scores
from stages.core.sequences import Sequences, length_batches
from stages.core.trainer import Fit, fit

WEIGHTS = tuple(i / 10 for i in range(11))
# The control's second base model: a seed no other cell of a 3-seed benchmark uses, so two ensembles'
# members never overlap (seed 42's control is not seed 43's base model).
CONTROL_SEED_OFFSET = 1000


@dataclass
class EnsembleFit:
    members: tuple[Fit, Fit]
    weight: float
    valid_ranks: torch.Tensor      # (M,) with the chosen weight
    test_ranks: torch.Tensor
    test_alt_ranks: torch.Tensor   # the other history-masking setting, same weight


def log_probs(model: Backbone, seq: torch.Tensor) -> torch.Tensor:
    """(B, L) -> (B, N) log-softmax over items 1..N at the latest position."""
    table = model.embedding.all()
    h = model(seq, table)[:, -1]                                          # (B, d)
    return F.log_softmax(model.scores(h, table)[:, 1:].float(), -1)      # (B, N)


@torch.no_grad()
def mixed_ranks(models: tuple[Backbone, Backbone], inputs: Sequences, targets: torch.Tensor,
                weights: tuple[float, ...], *, max_len: int, batch_size: int, mask_history: bool,
                device: torch.device) -> torch.Tensor:
    """(W, M) int64: each user's target rank under every mixing weight, both models run once."""
    for m in models:
        m.eval()
    ranks = torch.zeros(len(weights), inputs.n_users, dtype=torch.int64)
    for users in length_batches(inputs.lengths.clamp(max=max_len), batch_size):
        seq = inputs.padded(max_len, users)                               # (B, L)
        nonpad = (seq != 0).any(0)
        if nonpad.any():
            seq = seq[:, int(nonpad.int().argmax()):]
        seq = seq.to(device)
        lp_a, lp_b = (log_probs(m, seq) for m in models)                  # 2 x (B, N)
        hist = history_ids(inputs, users) if mask_history else None
        pad = lp_a.new_full((lp_a.shape[0], 1), -torch.inf)              # column 0 never ranks
        for i, w in enumerate(weights):
            scores = torch.cat([pad, (1 - w) * lp_a + w * lp_b], 1)      # (B, N+1)
            ranks[i, users] = ranks_from_scores(scores, targets[users], hist).cpu()
    return ranks


def fit_ensemble(cfg: TrainConfig, seqs: Sequences, make_base: Callable[[int], Backbone],
                 make_second: Callable[[int], Backbone], rt: Runtime) -> EnsembleFit:
    """Train both members (trainer.fit, unchanged), then choose w on validation and rank the test users.
    make_*(seed) seeds torch and builds a fresh model."""
    seed = cfg.trainer.seed
    second_seed = seed + CONTROL_SEED_OFFSET if cfg.source == "none" else seed
    trainer_b = cfg.trainer.model_copy(update={"seed": second_seed})
    # Distinct descriptions: the trainer names each fit's resume point after its description, and
    # with one name the control's second base model resumed from the first one's last checkpoint
    # (one more epoch, then the first model's best weights: the same model twice).
    fit_a = fit(make_base(seed), seqs, cfg.trainer, rt, variant="base", desc=f"ensemble A base {cfg.backbone.name}")
    second = cfg.ensemble_member if cfg.source != "none" else f"base seed {second_seed}"
    fit_b = fit(make_second(second_seed), seqs, trainer_b, rt, variant="tslrec", desc=f"ensemble B {second} {cfg.backbone.name}")
    models = (fit_a.model, fit_b.model)
    kw = dict(max_len=cfg.backbone.max_len, batch_size=cfg.trainer.eval_batch_size, device=torch.device(rt.device))
    mask = cfg.trainer.mask_history
    valid = mixed_ranks(models, seqs.train_part(), seqs.valid_targets(), WEIGHTS, mask_history=mask, **kw)
    ndcg = [metrics(r, mask).ndcg10 for r in valid]
    best = max(range(len(WEIGHTS)), key=lambda i: (ndcg[i], -i))         # ties: the smaller weight
    w = WEIGHTS[best]
    test_in, test_t = seqs.prefix(1), seqs.test_targets()
    test = mixed_ranks(models, test_in, test_t, (w,), mask_history=mask, **kw)[0]
    alt = mixed_ranks(models, test_in, test_t, (w,), mask_history=not mask, **kw)[0]
    return EnsembleFit(members=(fit_a, fit_b), weight=w, valid_ranks=valid[best], test_ranks=test, test_alt_ranks=alt)
