"""`hf_sdpa`: a Hugging Face encoder's own padded call with ``attention_mask``, SDPA attention.

The baseline BERT users run today (SDPA is transformers' default): ids padded to the batch's
longest sequence, the mask turned into an attention bias, every layer computed on pads too.
"""

from __future__ import annotations

from ..errors import UnsupportedError
from ..models import hf
from .base import Strategy, register


@register
class HFSdpa(Strategy):
    name = "hf_sdpa"
    summary = "hf: models: the model's own padded call, attention_mask, SDPA attention"
    runs = "hf"
    attn_implementation = "sdpa"

    def __init__(self, model):
        reason = type(self).module_reason(model)
        if reason:
            raise UnsupportedError(reason)
        self.encoder = model
        if model.config._attn_implementation != self.attn_implementation:
            model.set_attn_implementation(self.attn_implementation)

    @classmethod
    def module_reason(cls, module):
        return hf.module_reason(cls.name, module)

    def __call__(self, batch):
        return hf.padded_call(self.encoder, batch)
