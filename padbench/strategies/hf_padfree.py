"""`hf_padfree`: transformers' own padding-free path for a Hugging Face encoder.

The batch's real tokens as one row of ids, ``position_ids`` restarting at each sequence (from the
model's position offset: 2 for RoBERTa), no ``attention_mask``, and
``attn_implementation="flash_attention_2"``: FlashAttention-2 reads each sequence's bounds from
the restarting positions (what ``DataCollatorWithFlattening`` and sentence-transformers' flattened
batches feed it). Only FlashAttention does that: with SDPA, eager or flex attention the same call
lets every token attend across sequences (measured here on a BERT: 7e-3 off the per-sequence
output), so padbench refuses those rather than time a different function. FlashAttention-2 needs
CUDA, the ``flash-attn`` package and float16 or bfloat16.
"""

from __future__ import annotations

import torch

from ..errors import UnsupportedError
from ..models import hf
from .base import Strategy, register

HALF = (torch.float16, torch.bfloat16)


def flash_attn_missing() -> str | None:
    """Why transformers cannot run FlashAttention-2 here, or None."""
    try:
        from transformers.utils import is_flash_attn_2_available
    except ImportError:
        return "transformers is not installed (pip install 'padbench[hf]')"
    if not is_flash_attn_2_available():
        return "the flash-attn package (FlashAttention-2) is not installed for this torch and GPU"
    return None


@register
class HFPadFree(Strategy):
    name = "hf_padfree"
    summary = "hf: models: transformers' padding-free call (packed ids, restarting position_ids, FlashAttention-2)"
    runs = "hf"
    devices = frozenset({"cuda"})

    def __init__(self, model):
        reason = type(self).module_reason(model)
        if reason:
            raise UnsupportedError(reason)
        self.encoder = model
        self.offset = hf.FAMILIES[model.config.model_type].position_offset(model.config)
        if model.config._attn_implementation != "flash_attention_2":
            model.set_attn_implementation("flash_attention_2")

    @classmethod
    def unsupported_reason(cls, device, mode, dtype=torch.float32):
        reason = super().unsupported_reason(device, mode, dtype)
        if reason:
            return f"{reason}: transformers' padding-free path is FlashAttention-2, a CUDA kernel"
        if dtype not in HALF:
            return f"{cls.name} runs FlashAttention-2, which takes float16 or bfloat16, not {dtype}"
        return flash_attn_missing()

    @classmethod
    def module_reason(cls, module):
        reason = hf.module_reason(cls.name, module)
        if reason:
            return reason
        if not getattr(module, "_supports_flash_attn", False):
            return f"{type(module).__name__} has no FlashAttention-2 path in this transformers"
        return None

    def __call__(self, batch):
        positions = batch.positions() + self.offset
        out = self.encoder(input_ids=batch.ids[None], position_ids=positions[None]).last_hidden_state
        return out[0]
