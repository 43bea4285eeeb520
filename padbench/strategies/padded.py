"""`padded`: what most code does: pad to the batch max and pass ``src_key_padding_mask``."""

from __future__ import annotations

import contextlib

import torch

from .base import Strategy, register


@contextlib.contextmanager
def standard_path():
    """Force nn.MultiheadAttention/TransformerEncoder onto their standard (non-fast) path."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


@register
class Padded(Strategy):
    name = "padded"
    summary = "pad to the batch max, src_key_padding_mask, standard path"

    def __call__(self, batch):
        x, mask = batch.to_padded()
        with standard_path():
            out = self.encoder(x, src_key_padding_mask=mask)
        return batch.unpad(out)
