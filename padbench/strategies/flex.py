"""`flex`: compiled FlexAttention with a document mask over the packed tokens."""

from __future__ import annotations

import functools

import torch

from ..layers import encoder_forward, split_heads
from .base import Strategy, register


@functools.lru_cache(maxsize=1)
def _compiled():
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    return torch.compile(flex_attention, dynamic=False), create_block_mask


@register
class Flex(Strategy):
    name = "flex"
    summary = "compiled FlexAttention, document mask over packed tokens"
    needs_warmup = True
    requires_module = "torch.nn.attention.flex_attention"

    @classmethod
    def unsupported_reason(cls, device, mode, dtype=torch.float32):
        reason = super().unsupported_reason(device, mode, dtype)
        if reason:
            return reason
        if device == "cpu" and mode == "training":
            return "FlexAttention does not support backward on CPU"
        return None

    def __call__(self, batch):
        flex_attention, create_block_mask = _compiled()
        doc = torch.repeat_interleave(
            torch.arange(batch.batch_size, device=batch.device), batch.lengths, output_size=batch.num_tokens
        )

        def same_doc(b, h, q_idx, kv_idx):
            return doc[q_idx] == doc[kv_idx]

        T = batch.num_tokens
        block_mask = create_block_mask(same_doc, None, None, T, T, device=batch.device)

        def attend(q, k, v):
            q, k, v = (split_heads(t, self.nhead).transpose(0, 1)[None] for t in (q, k, v))
            return flex_attention(q, k, v, block_mask=block_mask)[0].transpose(0, 1).flatten(-2)

        return encoder_forward(self.encoder, batch.values, attend)
