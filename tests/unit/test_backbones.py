"""Backbones: shapes, causality (no position sees a later item), overfitting a deterministic
dataset, and the three item embedding modules (base / ci / tslrec gate)."""
import pytest
import torch

from schemas.backbone import BackboneConfig, TrainerConfig
from schemas.runtime import Runtime
from stages.backbones import NAMES, build
from stages.backbones.embedding import CategoryEmbedding, GateEmbedding, ItemEmbedding, make_embedding
from stages.core.sequences import Sequences
from stages.core.trainer import train_backbone
from tests.conftest import cycle_dataset as _cycle_dataset

N_ITEMS, DIM, MAX_LEN = 40, 16, 10




def model(name: str, **kw) -> torch.nn.Module:
    cfg = BackboneConfig(name=name, dim=DIM, max_len=MAX_LEN, **kw)
    torch.manual_seed(0)
    return build(cfg, ItemEmbedding(N_ITEMS, DIM)).eval()


@pytest.mark.parametrize("name", list(NAMES))
def test_shapes_and_padding_column(name):
    m = model(name)
    seq = torch.tensor([[0, 0, 0, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
    h = m(seq)
    assert h.shape == (2, MAX_LEN, DIM)
    s = m.scores(h[:, -1])
    assert s.shape == (2, N_ITEMS + 1)
    assert torch.isneginf(s[:, 0]).all() and torch.isfinite(s[:, 1:]).all()
    assert (h[0, :3] == 0).all()   # padding positions carry nothing


@pytest.mark.parametrize("name", list(NAMES))
def test_causal_no_position_sees_a_later_item(name):
    """Changing the items after position t leaves outputs at positions <= t unchanged."""
    m = model(name, layers=2)
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(1, N_ITEMS + 1, (4, MAX_LEN), generator=g)
    seq[:, :2] = 0
    h = m(seq)
    for t in range(2, MAX_LEN - 1):
        other = seq.clone()
        other[:, t + 1:] = torch.randint(1, N_ITEMS + 1, (4, MAX_LEN - t - 1), generator=g)
        torch.testing.assert_close(m(other)[:, :t + 1], h[:, :t + 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(NAMES))
def test_output_does_not_depend_on_padding_width(name):
    """A batch cut to its longest sequence gives the same outputs as a full-width one."""
    m = model(name)
    seq = torch.tensor([[0, 0, 0, 0, 0, 0, 3, 4, 5, 6]])
    torch.testing.assert_close(m(seq[:, 5:]), m(seq)[:, 5:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(NAMES))
def test_overfits_deterministic_next_item(name):
    seqs = cycle_dataset()
    b = BackboneConfig(name=name, dim=32, layers=1, dropout=0.0, max_len=MAX_LEN)
    t = TrainerConfig(lr=1e-2, batch_size=32, epochs=40, patience=5, seed=0)
    fit = train_backbone(b, t, seqs, lambda: ItemEmbedding(N_ITEMS, 32), Runtime(progress=False), variant="base")
    assert fit.result.test.hr10 >= 0.95, fit.result
    assert fit.result.valid.hr10 >= 0.95, fit.result
    assert fit.result.test.ndcg10 >= 0.8, fit.result   # mostly rank 0 (random: HR@10 = 0.25)


def test_embedding_variants_shapes_and_padding_row():
    cmap = torch.cat([torch.tensor([-1]), torch.arange(N_ITEMS) % 4])
    llm = torch.randn(N_ITEMS + 1, 24)
    for variant, kw in [("base", {}), ("ci", {"cluster_map": cmap}), ("tslrec", {"enhanced": llm})]:
        e = make_embedding(variant, N_ITEMS, DIM, **kw)
        table = e.all()
        assert table.shape == (N_ITEMS + 1, DIM), variant
        assert (table[0] == 0).all(), variant
        assert e(torch.tensor([[0, 3]])).shape == (1, 2, DIM)
        for name in NAMES:   # every backbone accepts every variant
            build(BackboneConfig(name=name, dim=DIM, max_len=MAX_LEN), e)(torch.tensor([[0, 1, 2]]))


def test_ci_items_of_one_category_share_its_embedding():
    cmap = torch.cat([torch.tensor([-1]), torch.arange(N_ITEMS) % 4])
    e = CategoryEmbedding(N_ITEMS, DIM, cmap)
    with torch.no_grad():
        e.item.weight.zero_()
    t = e.all()
    torch.testing.assert_close(t[1], t[5])        # items 1 and 5 are both category 0
    assert not torch.equal(t[1], t[2])
    assert "cats" not in e.state_dict()


def test_gate_shape_range_and_frozen_llm_embeddings():
    llm = torch.randn(N_ITEMS + 1, 24) * 10
    e = GateEmbedding(N_ITEMS, DIM, llm)
    e_rand, e_llm, g = e.parts()
    assert g.shape == (N_ITEMS + 1, DIM)
    assert (g >= 0).all() and (g <= 1).all()
    torch.testing.assert_close(e.all()[1:], (g * e_rand + (1 - g) * e_llm)[1:])
    # e_llm is a buffer: not a parameter, not saved, never updated.
    assert all(p is not e.e_llm for p in e.parameters())
    assert "e_llm" not in e.state_dict()
    e.all().sum().backward()
    assert e.e_llm.grad is None and e.proj.weight.grad is not None and e.gate.weight.grad is not None


def test_make_embedding_refuses_missing_inputs():
    with pytest.raises(ValueError, match="cluster_map"):
        make_embedding("ci", N_ITEMS, DIM)
    with pytest.raises(ValueError, match="enhanced"):
        make_embedding("tslrec", N_ITEMS, DIM)


def cycle_dataset(users: int = 60, n_items: int = N_ITEMS, seed: int = 0) -> Sequences:
    return _cycle_dataset(users, n_items, seed)


@pytest.mark.parametrize("name", list(NAMES))
@pytest.mark.parametrize("variant", ["base", "ci", "tslrec"])
def test_padding_row_stays_zero_after_a_training_step(name, variant):
    """Row 0 of the item table gets no gradient and stays exactly zero after a step on a mixed-length
    batch (Caser's windows read padding columns: with a plain `weight` it drifted), so outputs never
    depend on how much padding a batch carries."""
    from stages.core.trainer import batch_loss
    torch.manual_seed(0)
    cmap = torch.cat([torch.tensor([-1]), torch.arange(N_ITEMS) % 4])
    kw = {"ci": {"cluster_map": cmap}, "tslrec": {"enhanced": torch.randn(N_ITEMS + 1, 24)}}.get(variant, {})
    model = build(BackboneConfig(name=name, dim=DIM, max_len=MAX_LEN, dropout=0.0), make_embedding(variant, N_ITEMS, DIM, **kw))
    batch = torch.tensor([[0, 0, 0, 0, 1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [0, 0, 0, 11, 12, 13, 14]])
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    loss = batch_loss(model, batch)
    loss.backward()
    assert float(model.embedding.item.weight.grad[0].abs().sum()) == 0.0
    opt.step()
    assert (model.embedding.all()[0] == 0).all()
    model.eval()
    seq = torch.tensor([[11, 12, 13]])
    padded = torch.tensor([[0, 0, 0, 11, 12, 13]])
    torch.testing.assert_close(model(seq)[:, -1], model(padded)[:, -1])


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_a_training_step_is_bit_exact_run_to_run_on_two_threads(name):
    """The table's gradient sums many lookups of the same ids (padding above all). `table[seq]`'s backward
    added them with atomic float adds on more than one thread, so on two threads the same step gave a
    different gradient from run to run (14 of 20 repeats distinct); `rows` sums them in a fixed order."""
    g = torch.Generator().manual_seed(0)
    n_items, dim = 3000, 64
    batch = torch.randint(1, n_items + 1, (256, 51), generator=g)
    batch[:128, :30] = 0                                           # left padding: id 0 looked up 3,840 times

    def table_gradient() -> torch.Tensor:
        torch.manual_seed(0)
        model = build(BackboneConfig(name=name, dim=dim, max_len=50, dropout=0.0), ItemEmbedding(n_items, dim))
        model(batch[:, :-1]).square().mean().backward()
        return model.embedding.item.weight.grad

    torch.set_num_threads(2)                                       # the autouse fixture restores one thread
    first = table_gradient()
    for _ in range(6):
        assert torch.equal(table_gradient(), first)
