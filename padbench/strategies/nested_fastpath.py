"""`nested_fastpath`: nn.TransformerEncoder's own nested-tensor fast path (inference only).

PyTorch falls back to the dense path silently (training, grad enabled, a non-left-aligned
mask) or with a constructor warning (norm_first, odd nhead, other activations). This strategy
counts the two ops the nested path must call, so a fallback is reported, never timed as if
it were the nested path.
"""

from __future__ import annotations

import contextlib

import torch

from .base import Strategy, register


@contextlib.contextmanager
def count_calls(*names):
    """Count calls to ``torch.<name>`` for each name while the block runs."""
    counts = dict.fromkeys(names, 0)
    originals = {n: getattr(torch, n) for n in names}

    def wrap(name, fn):
        def counted(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return counted

    for n, fn in originals.items():
        setattr(torch, n, wrap(n, fn))
    try:
        yield counts
    finally:
        for n, fn in originals.items():
            setattr(torch, n, fn)


@register
class NestedFastpath(Strategy):
    name = "nested_fastpath"
    summary = "nn.TransformerEncoder(enable_nested_tensor=True) fast path, proven taken"
    modes = frozenset({"inference"})

    def __init__(self, encoder):
        super().__init__(encoder)
        self.fastpath_taken: bool | None = None
        self.fallback_reason = ""

    def __call__(self, batch):
        x, mask = batch.to_padded()
        out = self.encoder(x, src_key_padding_mask=mask)
        return batch.unpad(out)

    def probe(self, run_once) -> bool:
        """Call ``run_once()`` (this strategy, in the case's mode) while counting the nested
        path's ops; record whether the path was taken."""
        with count_calls("_nested_tensor_from_mask", "_transformer_encoder_layer_fwd") as counts:
            run_once()
        layers = len(self.encoder.layers)
        nested = counts["_nested_tensor_from_mask"] == 1
        fused = counts["_transformer_encoder_layer_fwd"] == layers
        self.fastpath_taken = nested and fused
        if not self.fastpath_taken:
            why = getattr(self.encoder, "use_nested_tensor", True) is False and (
                "the encoder was built without a usable nested path (norm_first, odd nhead, or activation)"
            )
            if not why and not fused:
                why = "the fused layer kernel was not called (training mode, grad enabled, or unsupported settings)"
            why = why or "the mask was not turned into a nested tensor"
            self.fallback_reason = f"nested fast path not taken: {why}"
        return self.fastpath_taken

    def info(self):
        return {"fastpath_taken": self.fastpath_taken}
