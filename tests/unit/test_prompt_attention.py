"""PromptLM trains eagerly on the CPU where the LM has attention dropout (CPU SDPA has no dropout kernel) and
evaluates with the model's own kernel; the two kernels compute the same function."""
from __future__ import annotations

import torch
from test_prefix import COUNTS, IDS, lora_model


def attn(model) -> str:
    return model.lm.config._attn_implementation


def test_encoder_with_attention_dropout_trains_eagerly_and_evaluates_with_its_own_kernel():
    model = lora_model("tiny-bert")                      # attention_probs_dropout_prob 0.1; .train() was called
    assert attn(model) == "eager"
    model.eval()
    assert attn(model) == "sdpa"
    with torch.no_grad():
        h_sdpa, _ = model.hidden(IDS, COUNTS)
        model.lm.set_attn_implementation("eager")
        h_eager, _ = model.hidden(IDS, COUNTS)
    torch.testing.assert_close(h_eager, h_sdpa, rtol=1e-5, atol=1e-5)
    model.train()
    assert attn(model) == "eager"


def test_a_model_without_attention_dropout_keeps_its_kernel():
    model = lora_model("tiny-llama")                     # attention_dropout 0.0
    assert attn(model) == "sdpa"
    model.eval().train()
    assert attn(model) == "sdpa"


def test_eager_training_off_keeps_the_models_own_kernel_in_training():
    model = lora_model("tiny-bert")
    model.eager_training = False
    assert attn(model.train()) == "sdpa"
