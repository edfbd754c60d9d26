"""sft.lm_dropout: the base LM's own dropout rates ('model') or one rate for all of them, set through the
real `make_model` path; LoRA's dropout stays sft.lora_dropout."""
from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from test_prefix import COUNTS, IDS, N

from schemas.runtime import Runtime
from schemas.sft import SftConfig
from stages.lm.dropout import FAST_EAGER
from stages.lm.load import load_lm, set_dropout
from stages.lm.model import EAGER_MAX_POSITIONS
from stages.lm.tasks import get_task
from stages.sft import make_model


def model_with(name: str, lm_dropout, lora_dropout: float = 0.0):
    cfg = SftConfig(model=name, lm_dropout=lm_dropout, lora_dropout=lora_dropout, precision="fp32")
    weight = torch.randn(N + 1, 8, generator=torch.Generator().manual_seed(0))
    return make_model(cfg, get_task("group"), weight, 4, Runtime(progress=False, offline=True)).train()


def two_training_forwards(model) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        torch.manual_seed(1)
        a, _ = model.hidden(IDS, COUNTS)
        torch.manual_seed(2)
        b, _ = model.hidden(IDS, COUNTS)
    return a, b


def test_lm_dropout_zero_makes_training_forwards_deterministic_and_equal_to_eval():
    model = model_with("tiny-bert", 0.0)                 # tiny-bert's own config: 0.1 hidden, 0.1 attention
    a, b = two_training_forwards(model)
    torch.testing.assert_close(a, b)
    with torch.no_grad():
        e, _ = model.eval().hidden(IDS, COUNTS)
    torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


def test_the_models_own_dropout_stays_by_default():
    assert SftConfig().resolved().lm_dropout == "model"
    assert SftConfig(task="next_item").resolved().lm_dropout == "model"
    a, b = two_training_forwards(model_with("tiny-bert", None))
    assert not torch.allclose(a, b)


def test_without_attention_dropout_an_encoder_trains_eagerly_on_short_prompts_and_with_sdpa_on_long_ones():
    # CPU SDPA's backward is the slower on short prompts, the faster on long ones (attention-kernel-minilm-nodrop.json)
    # on the CPU "eager" is FAST_EAGER: the eager attention with stages/lm/dropout.py's masks
    model = model_with("tiny-bert", 0.0)
    assert model.lm.config._attn_implementation == FAST_EAGER
    assert model.training_kernel(EAGER_MAX_POSITIONS) == FAST_EAGER and model.training_kernel(EAGER_MAX_POSITIONS + 1) == "sdpa"
    model.training_kernel = lambda length: "sdpa" if length > 4 else FAST_EAGER  # IDS' prompts are longer than 4
    model.hidden(IDS, COUNTS)
    assert model.lm.config._attn_implementation == "sdpa"                       # chosen per step, from its length
    assert model.eval().lm.config._attn_implementation == "sdpa"
    with_dropout = model_with("tiny-bert", "model")
    assert with_dropout.training_kernel(EAGER_MAX_POSITIONS + 1) == FAST_EAGER   # with dropout: eager at every length
    assert model_with("tiny-llama", 0.0).training_kernel(16) == "sdpa"           # decoders keep their own kernel


def test_a_rate_reaches_attention_modules_that_hold_a_float():
    # tiny-llama has no dropout module, only `attention_dropout` floats (0.0) its attention reads per call
    a, b = two_training_forwards(model_with("tiny-llama", "model"))
    torch.testing.assert_close(a, b)
    a, b = two_training_forwards(model_with("tiny-llama", 0.3))
    assert not torch.allclose(a, b)


def test_lora_dropout_is_not_touched():
    model = model_with("tiny-bert", 0.0, lora_dropout=0.2)
    rates = {float(m.p) for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and "lora_dropout" in n}
    assert rates == {0.2}
    with torch.no_grad():                                # lora_B starts at 0, where LoRA's dropout changes nothing
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    a, b = two_training_forwards(model)
    assert not torch.allclose(a, b)


def test_set_dropout_counts_every_rate_it_sets():
    lm, _ = load_lm("tiny-bert")
    # 2 layers x (attention, attention output, ffn output) + embeddings = 7 modules, + 2 config rates
    assert set_dropout(lm, 0.0) == 9
    assert lm.config.hidden_dropout_prob == 0.0 and lm.config.attention_probs_dropout_prob == 0.0


@pytest.mark.parametrize("bad", [1.0, -0.1, "half"])
def test_a_rate_outside_0_1_or_another_word_is_refused(bad):
    with pytest.raises(ValidationError, match="lm_dropout"):
        SftConfig(lm_dropout=bad)
