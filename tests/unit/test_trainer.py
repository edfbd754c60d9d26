"""Trainer: no validation/test item ever reaches training, chunking, early stopping, the stages."""
import pytest
import torch
import torch.nn.functional as F

from schemas.backbone import BackboneConfig, TrainerConfig
from schemas.pipeline import PipelineConfig
from schemas.pretrain import PretrainConfig, PretrainIn
from schemas.runtime import Runtime
from schemas.train import TrainConfig, TrainIn
from stages import pretrain, train
from stages.core.evaluate import metrics, rank_users
from stages.core.precision import resolve
from stages.core.sequences import Sequences
from stages.core.trainer import LinearCE, batches, training_chunks
import stages.core.trainer as trainer
from tests.conftest import cycle_dataset

RT = Runtime(progress=False)


TINY_B = BackboneConfig(dim=16, layers=1, max_len=10, dropout=0.1)
TINY_T = TrainerConfig(lr=1e-2, batch_size=16, epochs=3, patience=2, seed=0)


def sentinel_dataset() -> Sequences:
    """cycle_dataset over items 1..40, plus item 41 which is only ever a valid or test target."""
    base = cycle_dataset()
    rows = [base.user(u).long() for u in range(base.n_users)]
    for u in range(0, len(rows), 3):          # valid target = 41 (the test item follows it)
        rows[u] = torch.cat([rows[u][:-2], torch.tensor([41]), rows[u][-1:]])
    for u in range(1, len(rows), 3):          # test target = 41
        rows[u] = torch.cat([rows[u][:-1], torch.tensor([41])])
    offsets = torch.zeros(len(rows) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor([len(r) for r in rows]), 0)
    return Sequences(items=torch.cat(rows).to(torch.int32), offsets=offsets, n_items=41)


@pytest.mark.parametrize("name", ["sasrec", "caser"])
def test_training_never_sees_validation_or_test_items(name, monkeypatch):
    seqs = sentinel_dataset()
    assert (seqs.train_part().items == 41).sum() == 0
    seen_batches, seen_inputs = [], []
    real_loss = trainer.batch_loss

    def spy_loss(model, batch, *args):
        seen_batches.append(batch.clone())
        if not getattr(model, "_spied", False):   # also record every forward in training mode
            fwd = model.forward

            def spy_forward(seq, table=None):
                seen_inputs.append((model.training, seq.clone()))
                return fwd(seq, table)
            model.forward, model._spied = spy_forward, True
        return real_loss(model, batch, *args)

    monkeypatch.setattr(trainer, "batch_loss", spy_loss)
    fit = trainer.train_backbone(TINY_B.model_copy(update={"name": name}), TINY_T, seqs,
                                 lambda: trainer.ItemEmbedding(41, 16), RT, variant="base")
    assert seen_batches and all((b != 41).all() for b in seen_batches)   # neither input nor target
    train_inputs = [s for training, s in seen_inputs if training]
    assert train_inputs and all((s != 41).all() for s in train_inputs)
    # The sentinel does reach the model as an *input* when ranking the test item (its valid item).
    assert any((s == 41).any() for training, s in seen_inputs if not training)
    assert fit.result.epochs_run == 3


def test_chunks_cover_every_training_position_once():
    items = torch.arange(1, 31, dtype=torch.int32)               # one user of 30 items, one of 3
    seqs = Sequences(items=torch.cat([items, torch.tensor([5, 6, 7], dtype=torch.int32)]),
                     offsets=torch.tensor([0, 30, 33]), n_items=30)
    ch = training_chunks(seqs, max_len=8)                         # (C, 9)
    inp, tgt = ch[:, :-1], ch[:, 1:]
    pairs = sorted((int(a), int(b)) for a, b in zip(inp[(inp != 0) & (tgt != 0)], tgt[(inp != 0) & (tgt != 0)]))
    expected = sorted([(i, i + 1) for i in range(1, 30)] + [(5, 6), (6, 7)])
    assert pairs == expected
    assert ch.shape == (4 + 1, 9)                                  # ceil(29 / 8) = 4 chunks + 1


def test_batches_are_a_partition():
    lengths = torch.randint(1, 50, (1000,))
    b = batches(lengths, 64, torch.Generator().manual_seed(0), pool=4)
    assert sorted(torch.cat(b).tolist()) == list(range(1000))
    assert max(x.numel() for x in b) == 64


@pytest.mark.parametrize("block", [3, 100])
def test_fused_linear_ce_matches_cross_entropy(block):
    h = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 5, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 11, (7,))
    a = LinearCE.apply(h, w, target, 7.0, block)
    ga = torch.autograd.grad(a * 3, (h, w))
    b = F.cross_entropy(h @ w.T, target)
    gb = torch.autograd.grad(b * 3, (h, w))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)


def test_best_weights_are_restored_and_patience_respected():
    seqs = cycle_dataset()
    cfg = TINY_T.model_copy(update={"epochs": 30, "patience": 2, "lr": 3e-2})
    fit = trainer.train_backbone(TINY_B, cfg, seqs, lambda: trainer.ItemEmbedding(40, 16), RT, variant="base")
    r = fit.result
    assert r.epochs_run <= r.best_epoch + cfg.patience
    ranks = rank_users(fit.model, seqs.train_part(), seqs.valid_targets(), max_len=10, mask_history=cfg.mask_history)
    ran = resolve(cfg.precision, RT.device)                         # 'auto': what this machine runs
    assert r.valid.precision == r.test.precision == ran in ("fp32", "bf16")
    assert metrics(ranks, cfg.mask_history, ran) == r.valid          # the restored weights are the best ones
    other = rank_users(fit.model, seqs.prefix(1), seqs.test_targets(), max_len=10, mask_history=not cfg.mask_history)
    assert r.test_alt == metrics(other, not cfg.mask_history, ran)   # same weights, the other protocol
    assert torch.equal(ranks, fit.ranks["valid"])
    assert r.seconds_per_epoch > 0 and r.seconds_per_eval > 0 and r.train_seconds > 0


def test_pretrain_stage_artifacts():
    seqs = cycle_dataset()
    cfg = PretrainConfig(backbone=TINY_B, trainer=TINY_T.model_copy(update={"epochs": 1}))
    out = pretrain.run(cfg, PretrainIn(sequences=seqs.to_tensors()), RT)
    w = out.artifacts["item_embeddings"]["weight"]
    assert w.shape == (41, 16) and w.dtype == torch.float32 and (w[0] == 0).all()
    assert set(out.artifacts["ranks"]) == {"valid", "test"}
    assert out.artifacts["ranks"]["test"].shape == (60,) and out.artifacts["ranks"]["test"].dtype == torch.int64
    assert "pos.weight" in out.artifacts["backbone"]
    assert out.result.variant == "pretrain" and out.result.epochs_run == 1
    assert pretrain.VERSION >= 1 and "stages.backbones.sasrec" in pretrain.modules(PretrainConfig())
    assert "stages.backbones.caser" not in pretrain.modules(PretrainConfig())


def test_train_variants_refuse_missing_inputs_and_run_with_them():
    seqs = cycle_dataset().to_tensors()
    t = TINY_T.model_copy(update={"epochs": 1})
    with pytest.raises(ValueError, match="groups.*`group` stage"):
        train.run(TrainConfig(variant="ci", backbone=TINY_B, trainer=t), TrainIn(sequences=seqs), RT)
    with pytest.raises(ValueError, match="enhanced.*`augment` stage"):
        train.run(TrainConfig(variant="tslrec", backbone=TINY_B, trainer=t), TrainIn(sequences=seqs), RT)
    cmap = torch.cat([torch.tensor([-1]), torch.arange(40) % 4])
    out = train.run(TrainConfig(variant="ci", backbone=TINY_B, trainer=t),
                    TrainIn(sequences=seqs, groups={"cluster_map": cmap}), RT)
    assert out.result.variant == "ci" and out.artifacts["ranks"]["valid"].shape == (60,)
    out = train.run(TrainConfig(variant="tslrec", backbone=TINY_B, trainer=t),
                    TrainIn(sequences=seqs, enhanced={"embeddings": torch.randn(41, 24)}), RT)
    assert out.result.variant == "tslrec" and "embedding.proj.weight" in out.artifacts["backbone"]
    assert "embedding.e_llm" not in out.artifacts["backbone"]


def test_paper_profile_names_real_fields():
    from pipeline.overrides import PROFILES

    cfg = PipelineConfig()
    for dotted, value in PROFILES["paper"].items():
        obj = cfg
        *path, last = dotted.split(".")
        for p in path:
            obj = getattr(obj, p)
        assert hasattr(obj, last), dotted
    assert PROFILES["paper"]["pretrain.trainer.lr"] == 1e-4 and PROFILES["paper"]["train.backbone.dim"] == 256
