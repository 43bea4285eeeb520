"""`packed`: padbench's own strategy: no work is spent on padding.

Every dense layer (QKV and output projections, FFN, LayerNorm) runs on the packed ``[T, d]``
real tokens, and attention is padbench's varlen op over ``offsets``
(`padbench.kernels.varlen_attention`: a FlashAttention-2 Triton kernel on CUDA, padbench's C++
kernel on CPU).
"""

from __future__ import annotations

import torch

from ..kernels import backend_available, varlen_attention
from ..layers import encoder_forward, split_heads
from .base import Strategy, register


@register
class Packed(Strategy):
    name = "packed"
    summary = "dense layers on packed tokens + padbench's varlen attention kernel"

    @classmethod
    def unsupported_reason(cls, device, mode, dtype=torch.float32):
        reason = super().unsupported_reason(device, mode, dtype)
        if reason:
            return reason
        ok, why = backend_available(None, device)
        return None if ok else why

    def __call__(self, batch):
        offsets, max_len = batch.offsets, batch.max_len

        def attend(q, k, v):
            q, k, v = (split_heads(t, self.nhead) for t in (q, k, v))
            # Inputs were validated when the batch was built; skip the per-call NaN scan.
            return varlen_attention(q, k, v, offsets, max_seqlen=max_len, check=False).flatten(-2)

        return encoder_forward(self.encoder, batch.values, attend)
