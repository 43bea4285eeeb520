"""`varlen_attn`: torch.nn.attention.varlen (FlashAttention varlen) over packed tokens.

The library anchor for `packed` on CUDA: dense layers on packed tokens, attention by
PyTorch's own varlen flash kernel (CUDA only, fp16/bf16).
"""

from __future__ import annotations

import torch

from ..layers import encoder_forward, split_heads
from .base import Strategy, register


@register
class VarlenAttn(Strategy):
    name = "varlen_attn"
    summary = "torch.nn.attention.varlen.varlen_attn over packed tokens (CUDA)"
    devices = frozenset({"cuda"})
    requires_module = "torch.nn.attention.varlen"

    @classmethod
    def unsupported_reason(cls, device, mode, dtype=torch.float32):
        reason = super().unsupported_reason(device, mode, dtype)
        if reason:
            return reason
        if dtype not in (torch.float16, torch.bfloat16):
            return f"varlen_attn (FlashAttention) needs float16 or bfloat16, not {str(dtype).replace('torch.', '')}"
        return None

    def __call__(self, batch):
        from torch.nn.attention.varlen import varlen_attn

        cu = batch.offsets.to(torch.int32)
        max_len = batch.max_len

        def attend(q, k, v):
            q, k, v = (split_heads(t, self.nhead).contiguous() for t in (q, k, v))
            return varlen_attn(q, k, v, cu, cu, max_len, max_len).flatten(-2)

        return encoder_forward(self.encoder, batch.values, attend)
