"""Registered batching strategies: `names(model_kind)`, `get(name, encoder)`.

Imported in the order tables list them: the baseline first, library anchors last.
"""

from . import padded, bucketed, nested_fastpath, jagged, loop, packed, rowpacked  # noqa: F401,I001  (register, in order)
from . import flex, varlen_attn  # noqa: F401,I001
from . import hf_sdpa, hf_eager  # noqa: F401,I001  (a Hugging Face model's own call: hf: models only)
from .base import DEVICES, MODES, Strategy, get, names, register, strategy_class

__all__ = ["DEVICES", "MODES", "Strategy", "get", "names", "register", "strategy_class"]
