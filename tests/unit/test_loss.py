"""The SFT loss (paper, Eq. 3) and the group task built on it."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stages.lm.tasks import GROUP, get_task, preference_mse

unit = st.floats(0.0, 1.0, allow_nan=False, width=64)


@st.composite
def pair(draw):
    b, k = draw(st.integers(1, 6)), draw(st.integers(2, 7))
    x = draw(st.lists(unit, min_size=b * k, max_size=b * k))
    y = draw(st.lists(unit, min_size=b * k, max_size=b * k))
    return torch.tensor(x, dtype=torch.float64).view(b, k), torch.tensor(y, dtype=torch.float64).view(b, k)


@settings(max_examples=80, deadline=None)
@given(pair())
def test_non_negative_symmetric_and_zero_on_equal(xy):
    x, y = xy
    for red in ("mean", "sum"):
        assert float(preference_mse(x, y, red)) >= 0
        assert torch.equal(preference_mse(x, y, red), preference_mse(y, x, red))
        assert float(preference_mse(x, x, red)) == 0.0


@settings(max_examples=80, deadline=None)
@given(pair())
def test_zero_only_if_equal(xy):
    x, y = xy
    assume(not torch.equal(x, y))
    assume(float((x - y).abs().max()) > 1e-6)
    assert float(preference_mse(x, y, "sum")) > 0
    assert float(preference_mse(x, y, "mean")) > 0


@settings(max_examples=60, deadline=None)
@given(pair())
def test_reduction_is_eq3(xy):
    x, y = xy
    b, k = x.shape
    eq3 = sum((float(y[u, i]) - float(x[u, i])) ** 2 for u in range(b) for i in range(k))
    assert float(preference_mse(x, y, "sum")) == pytest.approx(eq3, rel=1e-12, abs=1e-15)
    assert float(preference_mse(x, y, "mean")) == pytest.approx(eq3 / b, rel=1e-12, abs=1e-15)
    per_user = preference_mse(x, y, "none")
    assert per_user.shape == (b,)
    assert torch.allclose(per_user.sum(), preference_mse(x, y, "sum"))


@settings(max_examples=10, deadline=None)
@given(pair())
def test_gradient_matches_finite_differences(xy):
    x, y = xy
    x = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: preference_mse(p, y, "mean"), (x,), eps=1e-6, atol=1e-6)
    # The whole chain the SFT optimises: logits -> softmax (Eq. 2) -> Eq. 3 mean over users.
    assert torch.autograd.gradcheck(lambda z: GROUP.loss(GROUP.predict(z), y), (x,), eps=1e-6, atol=1e-6)
    # and the analytic gradient of the mean: 2 (x - y) / B
    loss = preference_mse(x, y, "mean")
    (g,) = torch.autograd.grad(loss, x)
    assert torch.allclose(g, 2 * (x.detach() - y) / x.shape[0])


def test_unknown_reduction_and_tasks():
    with pytest.raises(ValueError):
        preference_mse(torch.zeros(1, 2), torch.zeros(1, 2), "max")
    assert get_task("next_item").name == "next_item"
    with pytest.raises(ValueError, match="unknown sft task"):
        get_task("nope")
    assert get_task("group") is GROUP
