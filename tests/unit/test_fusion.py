"""Fusions (train.fusion) and their item tables (train.source): padding, frozen parts, a training step,
the ensemble's validation-chosen weight, the runner's inputs, and the fusion benchmark end to end."""
import json

import pytest
import torch

from schemas.backbone import BackboneConfig, TrainerConfig
from schemas.names import ENSEMBLE_MEMBERS
from schemas.runtime import Runtime
from schemas.train import TrainConfig, TrainIn
from stages import train
from stages.backbones import build
from stages.backbones.embedding import ItemEmbedding, make_embedding
from stages.backbones.fusion import DualBackbone, build_fused, make_fusion
from stages.core.ensemble import WEIGHTS, mixed_ranks
from stages.core.evaluate import rank_users
from stages.core.trainer import batch_loss, fit, train_backbone, training_chunks
from tests.conftest import cycle_dataset

RT = Runtime(progress=False)
N, D, H = 40, 16, 24
FUSIONS = list(ENSEMBLE_MEMBERS)   # every item embedding fusion
TINY_B = BackboneConfig(dim=D, layers=1, max_len=10, dropout=0.1)
TINY_T = TrainerConfig(lr=1e-2, batch_size=16, epochs=3, patience=2, seed=0)


def raw_table() -> torch.Tensor:
    """A leaf (N+1, H) table that asks for gradients, with a non-zero padding row: a fusion must
    neither pass gradients back to it nor let row 0 through."""
    g = torch.Generator().manual_seed(1)
    return (torch.randn(N + 1, H, generator=g) + 3.0).requires_grad_()


def one_step(model, seqs) -> None:
    chunks = training_chunks(seqs.train_part(), model.max_len)
    opt = torch.optim.Adam(model.parameters(), lr=0.1, weight_decay=0.1)   # large: drift would show
    loss = batch_loss(model, chunks[:16])
    opt.zero_grad()
    loss.backward()
    opt.step()


@pytest.mark.parametrize("backbone", ["sasrec", "caser"])
@pytest.mark.parametrize("fusion", FUSIONS)
def test_fusion_keeps_padding_zero_trains_and_its_frozen_parts_get_no_gradient(fusion, backbone):
    seqs = cycle_dataset()
    table = raw_table()
    torch.manual_seed(0)
    model = build_fused(TINY_B.model_copy(update={"name": backbone}), make_fusion(fusion, N, D, table))
    emb = model.embedding
    frozen = {k: v.clone() for k, v in emb.named_buffers() if k != "keep"}
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    assert (emb.all()[0] == 0).all()
    one_step(model, seqs)
    assert table.grad is None                                        # the upstream table is never trained
    assert all(not b.requires_grad for b in emb.buffers())
    for k, v in emb.named_buffers():
        if k in frozen:
            assert torch.equal(v, frozen[k]), f"frozen {k} changed"
    trained = [k for k, p in model.named_parameters() if not torch.equal(p.detach(), before[k])]
    assert any(k.startswith(("embedding.", "inner.embedding.")) for k in trained)   # the item side learns
    assert any("embedding" not in k for k in trained)                                # and the backbone
    assert (emb.all()[0] == 0).all()                                 # padding row still exactly zero
    assert torch.isfinite(emb.all()).all()


def test_frozen_fusions_hold_their_table_and_init_holds_none():
    table = raw_table()
    for fusion in ["gate", "add", "dual", "adapter"]:
        assert make_fusion(fusion, N, D, table).e_llm.shape == (N + 1, H)
    null = make_fusion("nullspace", N, D, table, semantic_share=0.25)
    assert null.semantic.shape == (N + 1, 4) and null.item.weight.shape == (N + 1, D - 4)
    init = make_fusion("init", N, D, table)
    assert [k for k, _ in init.named_buffers()] == ["keep"]          # nothing frozen but the padding mask


def test_init_and_nullspace_follow_the_tables_principal_directions():
    """A rank-2 table: the PCA init spans its 2 directions; a rank-1 table's nullspace fusion has one
    frozen semantic coordinate that orders items exactly as the table's only direction does."""
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(2, H, generator=g)
    coef = torch.randn(N + 1, 2, generator=g)
    init = make_fusion("init", N, 2, coef @ basis, standardize=False).all()[1:]     # (N, 2)
    centered = coef[1:] - coef[1:].mean(0)
    fit_ = torch.linalg.lstsq(centered, init).solution                              # a 2x2 map explains it all
    assert torch.allclose(centered @ fit_, init, atol=1e-6)
    direction = torch.randn(H, generator=g)
    t = torch.randn(N + 1, 1, generator=g)
    null = make_fusion("nullspace", N, 2, t * direction, semantic_share=0.5)
    sem = null.semantic[1:, 0]
    corr = torch.corrcoef(torch.stack([sem, t[1:, 0]]))[0, 1].abs()
    assert corr > 0.999


def test_dual_runs_the_shared_backbone_once_per_view():
    torch.manual_seed(0)
    model = build_fused(TINY_B, make_fusion("dual", N, D, raw_table()))
    assert isinstance(model, DualBackbone)
    seq = torch.tensor([[0, 3, 4, 5], [1, 2, 3, 4]])
    model.eval()
    table = model.embedding.all()                                    # (N+1, 2d)
    h = model(seq, table)                                            # (B, L, 2d)
    id_view, llm_view = table.split(D, -1)
    assert torch.allclose(h[..., :D], model.inner.encode(id_view[seq], seq))
    assert torch.allclose(h[..., D:], model.inner.encode(llm_view[seq], seq))
    scores = model.scores(h[:, -1], table)
    both = h[:, -1, :D] @ id_view.T + h[:, -1, D:] @ llm_view.T   # the two views' logits, summed
    assert torch.allclose(scores[:, 1:], both[:, 1:], atol=1e-6)


def test_gate_on_the_enhanced_table_trains_exactly_as_before():
    """The default (gate, enhanced) is the paper's TSLRec as it was: same seed, same result."""
    seqs = cycle_dataset()
    table = torch.randn(N + 1, H, generator=torch.Generator().manual_seed(2))
    cfg = TrainConfig(variant="tslrec", backbone=TINY_B, trainer=TINY_T)
    new = train.run(cfg, TrainIn(sequences=seqs.to_tensors(), enhanced={"embeddings": table}), RT).result
    old = train_backbone(TINY_B, TINY_T, seqs, lambda: make_embedding("tslrec", N, D, enhanced=table), RT,
                         variant="tslrec").result
    assert (new.fusion, new.source) == ("gate", "enhanced")
    assert new.valid == old.valid and new.test == old.test and new.best_epoch == old.best_epoch


@pytest.mark.parametrize("fusion", ["add", "init", "dual", "nullspace"])
def test_each_source_reaches_the_fusion(fusion):
    """Sources change the model (a different frozen table, a different result); random needs no input."""
    seqs = cycle_dataset()
    cfg = TrainConfig(variant="tslrec", fusion=fusion, backbone=TINY_B, trainer=TINY_T, random_dim=H)
    inp = TrainIn(sequences=seqs.to_tensors(), enhanced={"embeddings": raw_table().detach()},
                  item_embeddings={"weight": torch.randn(N + 1, D, generator=torch.Generator().manual_seed(5))})
    results = {s: train.run(cfg.model_copy(update={"source": s}), inp, RT).result for s in ["enhanced", "pretrain", "random"]}
    assert all(r.fusion == fusion and r.source == s for s, r in results.items())
    assert len({r.valid.ndcg10 for r in results.values()}) > 1
    alone = train.run(cfg.model_copy(update={"source": "random"}), TrainIn(sequences=seqs.to_tensors()), RT).result
    assert alone.valid == results["random"].valid                    # the same fixed table, seeded
    with pytest.raises(ValueError, match="pretrain"):
        train.run(cfg.model_copy(update={"source": "pretrain"}), TrainIn(sequences=seqs.to_tensors()), RT)


def test_ensemble_weight_zero_is_the_base_model_and_the_weight_is_chosen_on_validation():
    seqs = cycle_dataset()
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(fit(build(TINY_B, ItemEmbedding(N, D)), seqs, TINY_T, RT, variant="base").model)
    kw = dict(max_len=10, batch_size=32, mask_history=True, device=torch.device("cpu"))
    mixed = mixed_ranks(tuple(models), seqs.train_part(), seqs.valid_targets(), (0.0, 1.0), **kw)
    for i, m in enumerate(models):
        alone = rank_users(m, seqs.train_part(), seqs.valid_targets(), max_len=10, mask_history=True)
        assert torch.equal(mixed[i], alone)

    cfg = TrainConfig(variant="tslrec", fusion="ensemble", source="none", backbone=TINY_B, trainer=TINY_T)
    res = train.run(cfg, TrainIn(sequences=seqs.to_tensors()), RT).result
    base = train_backbone(TINY_B, TINY_T, seqs, lambda: ItemEmbedding(N, D), RT, variant="base").result
    assert res.fusion == "ensemble" and res.source == "none" and res.ensemble_weight in WEIGHTS
    assert res.valid.ndcg10 >= base.valid.ndcg10                      # w = 0 (base alone) was a candidate


def test_the_controls_two_base_models_are_two_models_under_the_runners_checkpoints(tmp_path):
    """With per-epoch resume points (the runner sets checkpoint_dir), each member has its own: the
    second base model once resumed from the first one's and came out the same model."""
    seqs = cycle_dataset()
    trainer = TINY_T.model_copy(update={"epochs": 6, "patience": 6})
    cfg = TrainConfig(variant="tslrec", fusion="ensemble", source="none", backbone=TINY_B, trainer=trainer)
    out = train.run(cfg, TrainIn(sequences=seqs.to_tensors()), Runtime(progress=False, checkpoint_dir=tmp_path))
    w = out.artifacts["backbone"]
    a, b = w["base.embedding.item.weight"], w["second.embedding.item.weight"]
    assert not torch.equal(a, b)
    assert out.result.epochs_run == 2 * 6                    # both trained every epoch, none resumed


def test_ensemble_on_a_table_saves_both_members():
    seqs = cycle_dataset()
    cfg = TrainConfig(variant="tslrec", fusion="ensemble", source="random", ensemble_member="adapter",
                      random_dim=H, backbone=TINY_B, trainer=TINY_T)
    out = train.run(cfg, TrainIn(sequences=seqs.to_tensors()), RT)
    keys = out.artifacts["backbone"]
    assert any(k.startswith("base.embedding.item") for k in keys)
    assert any(k.startswith("second.embedding.adapter") for k in keys)
    assert out.artifacts["ranks"]["test"].shape == (seqs.n_users,)


def test_source_none_is_only_for_the_ensemble(cli):
    r = cli("run", "train", "--set", "train.variant=tslrec", "--set", "train.source=none")
    assert r.code == 2 and "ensemble" in r.err and r.out == ""


FAST = ["--set", "pretrain.backbone.dim=16", "--set", "pretrain.trainer.epochs=1", "--set", "train.backbone.dim=16",
        "--set", "train.trainer.epochs=1", "--set", "data.dataset=synthetic", "--no-progress"]


def test_runner_provides_the_sources_stage_only(cli):
    r = cli("--no-progress", "run", "train", "--json", "--set", "train.variant=tslrec", "--set", "train.source=random",
            "--set", "train.fusion=add", *FAST[:-1])
    assert r.code == 0, r.err
    assert "pretrain" not in r.err and "augment" not in r.err      # a random table needs no upstream stage
    out = json.loads(r.out)
    assert out["result"]["fusion"] == "add" and out["result"]["source"] == "random"
    r = cli("--no-progress", "run", "train", "--json", "--set", "train.variant=tslrec", "--set", "train.source=pretrain",
            "--set", "train.fusion=nullspace", *FAST[:-1])
    assert r.code == 0, r.err
    assert "pretrain" in r.err and "augment" not in r.err and "sft" not in r.err


def test_a_fusion_without_the_tslrec_variant_is_a_usage_error_and_run_all_keeps_it_to_tslrec(cli):
    r = cli("run", "train", "--set", "train.fusion=add")
    assert r.code == 2 and "variant" in r.err and r.out == ""
    from pipeline.experiment import train_configs
    from pipeline.overrides import build_config
    cfg = build_config(sets=["train.variant=tslrec", "train.fusion=add", "train.source=random"])
    runs = {c.train.variant: c.train for c in train_configs(cfg, seeds=1, backbones=["sasrec"], variants=["base", "tslrec", "ci"])}
    assert (runs["tslrec"].fusion, runs["tslrec"].source) == ("add", "random")
    assert (runs["base"].fusion, runs["ci"].source) == ("gate", "enhanced")
