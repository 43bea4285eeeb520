"""What a strategy is, and the registry that names them.

A strategy computes the reference encoder's function on a `VarlenBatch` and returns the packed
output ``[T, d]`` (valid positions only, in ``batch.values`` order), so any two strategies'
outputs compare element for element. It declares the devices and modes it supports; anything
else raises `UnsupportedError` with the reason: `prepare` asks before building a case, and every
call checks again, so a strategy used straight from the library on a device, mode or dtype it
cannot run says why instead of failing deep inside torch.
"""

from __future__ import annotations

import functools
import importlib

import torch
from torch import nn

from ..batch import VarlenBatch
from ..errors import PadbenchError, UnsupportedError

DEVICES = ("cpu", "cuda")
MODES = ("inference", "training")

_REGISTRY: dict[str, type["Strategy"]] = {}


class Strategy:
    name: str = ""
    summary: str = ""
    devices: frozenset = frozenset(DEVICES)
    modes: frozenset = frozenset(MODES)
    # True when the first call does one-time work (compilation) that must not be timed or probed.
    needs_warmup: bool = False
    # A torch module the strategy needs (older torch releases lack some).
    requires_module: str | None = None
    # What it runs: "encoder", an nn.TransformerEncoder's layers on hidden states (every model has
    # them: a Hugging Face model's are mapped onto one), or "hf", a Hugging Face model's own call.
    runs: str = "encoder"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            cls.__call__ = _checked(cls.__dict__["__call__"])

    def __init__(self, encoder: nn.TransformerEncoder):
        reason = type(self).module_reason(encoder)
        if reason:
            raise UnsupportedError(reason)
        self.encoder = encoder
        layer = encoder.layers[0]
        self.nhead = layer.self_attn.num_heads
        self.d_model = layer.self_attn.embed_dim

    @classmethod
    def module_reason(cls, module: nn.Module) -> str | None:
        """Why this strategy cannot compute ``module``'s function exactly, or None if it can."""
        if not isinstance(module, nn.TransformerEncoder):
            return f"{cls.name} runs an nn.TransformerEncoder's layers, not a {type(module).__name__}"
        return None

    @classmethod
    def unsupported_reason(cls, device: str, mode: str, dtype: torch.dtype = torch.float32) -> str | None:
        """Why this strategy cannot run (device, mode, dtype) here, or None if it can."""
        if device not in cls.devices:
            return f"{cls.name} does not run on {device} (runs on: {', '.join(sorted(cls.devices))})"
        if mode not in cls.modes:
            return f"{cls.name} does not support {mode} (supports: {', '.join(sorted(cls.modes))})"
        if cls.requires_module:
            try:
                importlib.import_module(cls.requires_module)
            except ImportError:
                return f"this torch ({torch.__version__}) has no {cls.requires_module}"
        return None

    @classmethod
    def check(cls, device: str, mode: str, dtype: torch.dtype = torch.float32) -> None:
        reason = cls.unsupported_reason(device, mode, dtype)
        if reason:
            raise UnsupportedError(reason)

    def __call__(self, batch: VarlenBatch) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def info(self) -> dict:
        """Extra facts for the record (e.g. whether a fast path was really taken)."""
        return {}


def call_mode(encoder: nn.Module) -> str:
    """The mode a call runs in: training when autograd will track the encoder's parameters."""
    grads = torch.is_grad_enabled() and any(p.requires_grad for p in encoder.parameters())
    return "training" if grads else "inference"


def _checked(call):
    """Wrap a strategy's ``__call__`` so that an unsupported (device, mode, dtype) raises UnsupportedError."""
    @functools.wraps(call)
    def checked(self, batch: VarlenBatch):
        key = (batch.device.type, call_mode(self.encoder), batch.dtype)
        reasons = type(self).__dict__.get("_reasons")
        if reasons is None:
            reasons = type(self)._reasons = {}
        if key not in reasons:
            reasons[key] = type(self).unsupported_reason(*key)
        if reasons[key]:
            raise UnsupportedError(reasons[key])
        return call(self, batch)

    return checked


def register(cls: type[Strategy]) -> type[Strategy]:
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"strategy name {cls.name!r} missing or registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def names(model_kind: str = "spec") -> list[str]:
    """Strategies for a model of ``model_kind``: every model has encoder layers; only `hf` has its own call."""
    runs = ("encoder", "hf") if model_kind == "hf" else ("encoder",)
    return [n for n, cls in _REGISTRY.items() if cls.runs in runs]


def strategy_class(name: str) -> type[Strategy]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise PadbenchError(f"unknown strategy {name!r}; choose from {', '.join(_REGISTRY)}") from None


def get(name: str, encoder: nn.TransformerEncoder) -> Strategy:
    return strategy_class(name)(encoder)
