"""`hf_eager`: a Hugging Face encoder's own padded call with ``attention_mask``, eager attention.

transformers' plain attention (matmul, additive mask, softmax): what a model runs where SDPA is
switched off; ids padded to the batch's longest sequence, every layer computed on pads too.
"""

from __future__ import annotations

from ..errors import UnsupportedError
from ..models import hf
from .base import Strategy, register


@register
class HFEager(Strategy):
    name = "hf_eager"
    summary = "hf: models: the model's own padded call, attention_mask, eager attention"
    runs = "hf"
    attn_implementation = "eager"

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
