"""Fused scoring + full-softmax cross-entropy over all items, in float32 or bfloat16.

The training loss of every backbone: sum_r CE(softmax(h_r @ W.T), y_r) / denom. It is nearly all of a
training step's arithmetic (Beauty: 131k positions x 12,101 items x d=64 x 3 matmuls = 0.6 TFLOP per
epoch, ~90% of a SASRec step on one thread), so it is written by hand:
- the (R, N) logits exist one row block at a time (a long-sequence batch has R ~ 12k rows);
- the gradients (softmax - onehot) @ W and (softmax - onehot).T @ h are computed block by block in the
  forward pass (the loss is a scalar); backward only scales them. On CPU the generic path costs ~3x the
  matmul itself (log_softmax, a zero-filled one-hot gradient, log_softmax_backward);
- `dtype=torch.bfloat16` runs the three matmuls and the softmax's elementwise passes in bfloat16 (this
  machine's AVX512-BF16 matmul: ~4x float32 at these shapes; elementwise passes move half the bytes),
  while the row sums, the loss and the accumulated gradients stay float32 (fp32 master weights, as in
  mixed-precision training). Converting (R, N) blocks between dtypes would cost as much as the matmul,
  so the logits never leave bfloat16.
"""
from __future__ import annotations

import torch

SAFE_LOGIT = 60.0


class LinearCE(torch.autograd.Function):
    """With denom = R, the same value and gradients as F.cross_entropy(h @ w.T, y) (float32)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, target: torch.Tensor, denom: float, block: int,
                dtype: torch.dtype | None = None) -> torch.Tensor:
        R = h.shape[0]
        acc, dtype = h.dtype, dtype or h.dtype                      # accumulate in h's dtype (float32)
        gh, gw = torch.empty_like(h), torch.zeros_like(w)          # (R, d), (N, d)
        hc, wc = h.detach().to(dtype), w.detach().to(dtype)       # no copies when dtype == acc
        # The softmax's max-subtraction only guards exp against overflow. |logit| <= |h_r| max_j |w_j|:
        # when that bound is below SAFE_LOGIT for every row, exp(logit) lies in [e^-60, e^60] and the
        # row sums (N e^60 at most) fit float32, so the max pass over (R, N) (and its subtraction) is skipped.
        # On CUDA the max pass is cheap and reading the bound back would stall the stream every step.
        shift = h.is_cuda or R == 0 or float(h.detach().norm(dim=1).max() * w.detach().norm(dim=1).max()) >= SAFE_LOGIT
        loss = h.new_zeros(())
        for i in range(0, R, block):
            hb, tb = hc[i:i + block], target[i:i + block]
            p = hb @ wc.T                                          # (b, N) logits
            tgt_logit = p.gather(1, tb.unsqueeze(1)).squeeze(1).to(acc)    # (b,)
            m = p.max(1, keepdim=True).values if shift else p.new_zeros((p.shape[0], 1))   # (b, 1)
            (p.sub_(m) if shift else p).exp_()                     # p = exp(logits - m)
            # Row sums: accumulated in float32 inside the reduction either way; for bf16 only the
            # result is rounded (asking for a float32 result would first copy the whole block).
            z = p.sum(1, keepdim=True).to(acc)                     # (b, 1)
            loss += ((z.log() + m.to(acc)).squeeze(1) - tgt_logit).sum()
            p.mul_(z.reciprocal().to(dtype))                       # softmax
            p[torch.arange(p.shape[0], device=p.device), tb] -= 1.0   # d loss_r / d logits_r
            gh[i:i + block] = p @ wc                               # (b, d)
            if dtype == acc:
                gw.addmm_(p.T, hb)                                 # (N, d)
            else:
                gw += p.T @ hb                                     # (N, d) bf16 product, fp32 sum
        ctx.save_for_backward(gh, gw)
        ctx.denom = denom
        return loss / denom

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gh, gw = ctx.saved_tensors
        scale = grad / ctx.denom
        return gh * scale, gw * scale, None, None, None, None
