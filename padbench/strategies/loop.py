"""`loop`: one sequence at a time through the reference module, no padding at all."""

from __future__ import annotations

import torch

from .base import Strategy, register


@register
class Loop(Strategy):
    name = "loop"
    summary = "one sequence at a time through nn.TransformerEncoder, no padding"

    def __call__(self, batch):
        outs = [self.encoder(seq[None])[0] if len(seq) else seq for seq in batch.to_list()]
        return torch.cat(outs)
