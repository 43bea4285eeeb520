"""`flex`: FlexAttention with a document mask over the packed tokens (compiled on CUDA, eager on CPU)."""

from __future__ import annotations

import functools
import warnings

import torch

from ..layers import encoder_forward, split_heads
from .base import Strategy, register


@functools.lru_cache(maxsize=2)
def _flex(device_type: str):
    """FlexAttention for ``device_type``: compiled on CUDA, eager on CPU.

    On CPU the compiled kernel (torch 2.13, inductor's CPU template) gives wrong outputs from the
    second batch of a given token count on: measured against `padded` on two batches A, B run
    A, B, A, B, the errors were 1e-6, 1e-6, NaN, 1e-6 (and worse with torch's dense layers),
    while eager FlexAttention stayed at 1e-6 every time. A fast wrong answer is not a result, so
    CPU runs the eager, unfused path and is timed as such.
    """
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if device_type == "cpu":
        def eager(*args, **kwargs):
            # Eager is padbench's choice here (above): torch's advice to compile it is not for the user.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
                return flex_attention(*args, **kwargs)

        return eager, create_block_mask
    return torch.compile(flex_attention, dynamic=False), create_block_mask


@register
class Flex(Strategy):
    name = "flex"
    summary = "FlexAttention (compiled on CUDA, eager on CPU), document mask over packed tokens"
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
        flex_attention, create_block_mask = _flex(batch.device.type)
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
