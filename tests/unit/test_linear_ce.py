"""The fused loss's numerics switches: bf16 against fp32, the skipped max-shift, big logits."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from schemas.backbone import BackboneConfig, TrainerConfig
from schemas.runtime import Runtime
from stages.backbones.embedding import ItemEmbedding
from stages.core import linear_ce, trainer
from stages.core.linear_ce import LinearCE
from tests.conftest import cycle_dataset


def grads(h, w, y, dtype=None, block=64):
    h, w = h.clone().requires_grad_(), w.clone().requires_grad_()
    loss = LinearCE.apply(h, w, y, float(h.shape[0]), block, dtype)
    return (loss, *torch.autograd.grad(loss, (h, w)))


def rel(a, b):
    return float((a - b).norm() / b.norm())


def test_bf16_loss_and_gradients_close_to_fp32():
    torch.manual_seed(0)
    h, w, y = torch.randn(300, 16), torch.randn(500, 16) * 0.3, torch.randint(0, 500, (300,))
    ref = F.cross_entropy(h @ w.T, y)
    loss, gh, gw = grads(h, w, y, torch.bfloat16)
    _, gh32, gw32 = grads(h, w, y)
    assert loss.dtype == torch.float32 and gh.dtype == torch.float32 and gw.dtype == torch.float32
    assert abs(float(loss) - float(ref)) < 1e-2 * float(ref)
    assert rel(gh, gh32) < 2e-2 and rel(gw, gw32) < 2e-2
    assert rel(gh, gh32) > 0   # it really ran in bf16


def test_max_shift_skipped_only_when_safe_and_same_result(monkeypatch):
    torch.manual_seed(1)
    h, w, y = torch.randn(40, 8), torch.randn(30, 8), torch.randint(0, 30, (40,))
    unshifted = grads(h, w, y)
    monkeypatch.setattr(linear_ce, "SAFE_LOGIT", 0.0)   # force the max pass
    shifted = grads(h, w, y)
    for a, b in zip(unshifted, shifted):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_huge_logits_stay_finite(dtype):
    h, w = torch.full((4, 2), 100.0), torch.tensor([[1.0, 1.0], [-1.0, 0.5], [0.0, 0.0]])
    y = torch.tensor([0, 1, 2, 0])
    loss, gh, gw = grads(h, w, y, dtype)
    assert torch.isfinite(loss) and torch.isfinite(gh).all() and torch.isfinite(gw).all()
    ref = F.cross_entropy(h @ w.T, y)
    assert abs(float(loss) - float(ref)) < 1e-2 * float(ref) + 1e-3


def test_bf16_training_reaches_fp32_quality_on_a_tiny_dataset():
    seqs = cycle_dataset()
    b = BackboneConfig(name="sasrec", dim=16, layers=1, dropout=0.0, max_len=10)
    out = {}
    for precision in ("fp32", "bf16"):
        t = TrainerConfig(lr=1e-2, batch_size=32, epochs=15, patience=15, seed=0, precision=precision)
        fit = trainer.train_backbone(b, t, seqs, lambda: ItemEmbedding(40, 16), Runtime(progress=False), variant="base")
        out[precision] = fit.result.valid.ndcg10
    assert out["bf16"] >= out["fp32"] - 0.05, out
