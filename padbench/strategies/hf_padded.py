"""`hf_sdpa` and `hf_eager`: a Hugging Face encoder's own padded call with ``attention_mask``.

ids padded to the batch's longest sequence, the mask turned into an attention bias, every layer
computed on pads too. `hf_sdpa` is the baseline BERT users run today (SDPA is transformers'
default); `hf_eager` is transformers' plain attention (matmul, additive mask, softmax), what a
model runs where SDPA is switched off. One module: they differ only in the attention switch.
"""

from __future__ import annotations

from ..errors import UnsupportedError
from ..models import hf
from .base import Strategy, register


class _HFPaddedCall(Strategy):
    runs = "hf"
    attn_implementation = ""

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


@register
class HFSdpa(_HFPaddedCall):
    name = "hf_sdpa"
    summary = "hf: models: the model's own padded call, attention_mask, SDPA attention"
    attn_implementation = "sdpa"


@register
class HFEager(_HFPaddedCall):
    name = "hf_eager"
    summary = "hf: models: the model's own padded call, attention_mask, eager attention"
    attn_implementation = "eager"
