"""stages/lm/dropout.py: the SFT's CPU dropout is torch's dropout in distribution (independent Bernoulli keeps at
1 - p, up to p's 2^-16 rounding, scaled to keep the mean), seeded by torch's generator, and its eager attention
computes transformers' own eager attention."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_prefix import COUNTS, IDS, N

from schemas.runtime import Runtime
from schemas.sft import SftConfig
from stages.lm.dropout import FAST_EAGER, FastDropout, fast_dropout, keep_mask, use_fast_dropout
from stages.lm.load import load_lm, quiet_transformers
from stages.lm.tasks import get_task
from stages.sft import make_model


@settings(max_examples=25, deadline=None)
@given(p=st.floats(0.01, 0.9), n=st.integers(1, 5000), seed=st.integers(0, 2**31 - 1))
def test_a_mask_holds_zeros_and_one_scale_that_keeps_the_mean(p, n, seed):
    torch.manual_seed(seed)
    m = keep_mask(torch.Size([n]), p, torch.float32)
    drop = round(p * 65536)
    scale = 65536 / (65536 - drop)
    assert all(v == 0.0 or v == pytest.approx(scale) for v in m.unique().tolist())
    assert scale * (1 - drop / 65536) == pytest.approx(1.0)            # E[mask] = 1


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_the_kept_fraction_is_one_minus_p_and_neighbours_are_independent(p):
    torch.manual_seed(0)
    n = 400_000
    kept = keep_mask(torch.Size([n]), p, torch.float32) > 0
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(float(kept.float().mean()) - (1 - p)) < 6 * sd
    for lag in (1, 2, 3, 4):     # four elements share one 64-bit draw: lags 1-3 inside a word, 4 across words
        both = (~kept[:-lag] & ~kept[lag:]).float().mean()
        assert abs(float(both) - p * p) < 6 * math.sqrt(p * p * (1 - p * p) / n)


def test_masks_follow_torchs_seed_and_the_gradient_is_the_mask():
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(3)
    a = fast_dropout(x, 0.2)
    torch.manual_seed(3)
    b = fast_dropout(x, 0.2)
    torch.manual_seed(4)
    c = fast_dropout(x, 0.2)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    a.sum().backward()
    torch.testing.assert_close(x.grad, (a / x).detach().nan_to_num())   # d(x * m)/dx = m


def test_eval_and_zero_rate_are_the_identity_and_a_bf16_input_keeps_its_dtype():
    x = torch.randn(8, 5, dtype=torch.bfloat16)
    assert fast_dropout(x, 0.1, training=False) is x and fast_dropout(x, 0.0) is x
    assert fast_dropout(x, 0.1).dtype == torch.bfloat16
    d = FastDropout(0.1).eval()
    assert d(x) is x


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_the_fast_eager_kernel_is_transformers_eager_attention(name):
    lm, _ = load_lm(name, offline=True)
    lm.eval()
    x = torch.randn(3, 7, lm.config.hidden_size, generator=torch.Generator().manual_seed(0))   # (B, T, H)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, :3] = 0
    mask[1, 5:] = 0
    kw = {"use_cache": False} if name == "tiny-llama" else {}
    with quiet_transformers():
        lm.set_attn_implementation("eager")
        eager = lm(inputs_embeds=x, attention_mask=mask, **kw).last_hidden_state
        use_fast_dropout(lm)
        lm.set_attn_implementation(FAST_EAGER)
        fast = lm(inputs_embeds=x, attention_mask=mask, **kw).last_hidden_state
    torch.testing.assert_close(fast, eager)


def test_the_sft_model_on_the_cpu_draws_every_dropout_fast_and_keeps_its_rates():
    cfg = SftConfig(model="tiny-bert", precision="fp32", lora_dropout=0.05)
    weight = torch.randn(N + 1, 8, generator=torch.Generator().manual_seed(0))
    model = make_model(cfg, get_task("group"), weight, 4, Runtime(progress=False, offline=True)).train()
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(type(m) is FastDropout for m in drops)
    assert {round(m.p, 4) for m in drops} == {0.1, 0.05}            # tiny-bert's own and LoRA's
    assert model.lm.config._attn_implementation == FAST_EAGER
    with torch.no_grad():
        torch.manual_seed(1)
        a, _ = model.hidden(IDS, COUNTS)
        torch.manual_seed(1)
        b, _ = model.hidden(IDS, COUNTS)
        torch.manual_seed(2)
        c, _ = model.hidden(IDS, COUNTS)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
