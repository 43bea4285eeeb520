"""Registered batching strategies: `names()`, `get(name, encoder)`."""

from . import bucketed, flex, jagged, loop, nested_fastpath, padded, varlen_attn  # noqa: F401  (register)
from .base import DEVICES, MODES, Strategy, get, names, register, strategy_class

__all__ = ["DEVICES", "MODES", "Strategy", "get", "names", "register", "strategy_class"]
