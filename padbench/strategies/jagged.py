"""`jagged`: a jagged nested tensor (NJT) through Linear, LayerNorm and SDPA."""

from __future__ import annotations

import torch.nn.functional as F

from ..layers import encoder_forward, split_heads
from .base import Strategy, register


@register
class Jagged(Strategy):
    name = "jagged"
    summary = "torch.nested jagged layout through Linear, LayerNorm and SDPA"

    def _attend(self, q, k, v):
        # NJT needs contiguous q/k/v before the head split ("No viable backend" otherwise).
        q, k, v = (split_heads(t.contiguous(), self.nhead).transpose(1, 2) for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(-2)

    def __call__(self, batch):
        return encoder_forward(self.encoder, batch.to_jagged(), self._attend).values()
