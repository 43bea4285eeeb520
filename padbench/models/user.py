"""`MODULE:CALLABLE`: the user's own ``nn.TransformerEncoder``, with its own weights.

``CALLABLE()`` returns an ``nn.TransformerEncoder`` or a module holding exactly one. padbench
reads its configuration from the module (sizes, activation, ``norm_first``, each LayerNorm's
eps, bias, final norm) and rebuilds it the way every strategy needs it (``batch_first``,
dropout 0, the nested-tensor path enabled) with the user's state dict loaded strictly, so the
function is the user's. The reference is the user's module itself (dropout off, its own
layout), not the rebuild: a rebuild that got anything wrong fails equivalence.

Anything padbench's layer math does not compute (a subclass with its own ``forward``, extra
key/value biases, other key/value sizes, layers that differ from each other) is refused with
the reason, never run as a silently different function.
"""

from __future__ import annotations

import copy
import functools
import warnings

import torch.nn.functional as F
from torch import nn

from ..errors import PadbenchError
from .base import Description, EncoderModel, Shape, copy_to, count_params, zero_dropout


def activation_name(act) -> str:
    """relu / gelu (exact) / gelu_tanh for what torch and padbench's C++ layers know, else ``custom:NAME``."""
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu:
        return "gelu"
    if isinstance(act, nn.GELU):
        return "gelu" if act.approximate == "none" else f"gelu_{act.approximate}"
    name = getattr(act, "__qualname__", None) or type(act).__qualname__
    return f"custom:{name}"


def find_encoder(model: nn.Module, target: str) -> nn.TransformerEncoder:
    """``model`` itself or the one ``nn.TransformerEncoder`` inside it."""
    if isinstance(model, nn.TransformerEncoder):
        return model
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.TransformerEncoder)]
    if not found:
        raise PadbenchError(f"{target}() returned a {type(model).__name__} holding no nn.TransformerEncoder")
    if len(found) > 1:
        where = ", ".join(n for n, _ in found)
        raise PadbenchError(f"{target}() holds {len(found)} nn.TransformerEncoders ({where}); "
                            "return the one to measure")
    return found[0][1]


def _overrides(obj, base, names) -> str | None:
    for name in names:
        if getattr(type(obj), name) is not getattr(base, name):
            return name
    return None


def _check(encoder: nn.TransformerEncoder) -> None:
    """Refuse what padbench's layer math does not compute (one line, naming the part)."""
    meth = _overrides(encoder, nn.TransformerEncoder, ("forward",))
    if meth:
        raise PadbenchError(f"{type(encoder).__name__} overrides nn.TransformerEncoder.{meth}: padbench computes "
                            "nn.TransformerEncoder's own math only")
    first = None
    for i, layer in enumerate(encoder.layers):
        if not isinstance(layer, nn.TransformerEncoderLayer):
            raise PadbenchError(f"layers.{i} is a {type(layer).__name__}, not an nn.TransformerEncoderLayer")
        meth = _overrides(layer, nn.TransformerEncoderLayer, ("forward", "_sa_block", "_ff_block"))
        if meth:
            raise PadbenchError(f"layers.{i} ({type(layer).__name__}) overrides {meth}: padbench computes "
                                "nn.TransformerEncoderLayer's own math only")
        mha = layer.self_attn
        if type(mha) is not nn.MultiheadAttention or not mha._qkv_same_embed_dim:
            raise PadbenchError(f"layers.{i}.self_attn must be a plain nn.MultiheadAttention with one in_proj weight")
        if mha.bias_k is not None or mha.add_zero_attn:
            raise PadbenchError(f"layers.{i}.self_attn uses add_bias_kv or add_zero_attn, "
                                "which padbench does not compute")
        cfg = _layer_config(layer)
        if first is None:
            first = cfg
        elif cfg != first:
            diff = next(k for k in cfg if cfg[k] != first[k])
            raise PadbenchError(f"layers.{i} differs from layers.0 in {diff} ({cfg[diff]!r} vs {first[diff]!r})")


def _layer_config(layer: nn.TransformerEncoderLayer) -> dict:
    mha = layer.self_attn
    eps = {layer.norm1.eps, layer.norm2.eps}
    return {
        "d_model": mha.embed_dim,
        "nhead": mha.num_heads,
        "dim_feedforward": layer.linear1.out_features,
        "activation": activation_name(layer.activation),
        "norm_first": bool(layer.norm_first),
        "layer_norm_eps": eps.pop() if len(eps) == 1 else sorted(eps),
        "bias": layer.linear1.bias is not None,
    }


def read_config(encoder: nn.TransformerEncoder) -> dict:
    """The configuration padbench runs: what the module says, read from the module."""
    cfg = _layer_config(encoder.layers[0])
    cfg["num_layers"] = len(encoder.layers)
    cfg["final_norm"] = encoder.norm is not None
    if encoder.norm is not None:
        cfg["final_norm_eps"] = getattr(encoder.norm, "eps", None)
    return cfg


def rebuild(encoder: nn.TransformerEncoder) -> nn.TransformerEncoder:
    """The same function as ``encoder`` (its weights, each norm's eps) in the layout strategies need."""
    cfg = read_config(encoder)
    layer0 = encoder.layers[0]
    act = layer0.activation
    act = copy.deepcopy(act) if isinstance(act, nn.Module) else act
    layer = nn.TransformerEncoderLayer(cfg["d_model"], cfg["nhead"], cfg["dim_feedforward"], dropout=0.0,
                                       activation=act, layer_norm_eps=layer0.norm1.eps, batch_first=True,
                                       norm_first=cfg["norm_first"], bias=cfg["bias"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # nested path off for some settings: nested_fastpath says so
        out = nn.TransformerEncoder(layer, cfg["num_layers"], norm=copy.deepcopy(encoder.norm),
                                    enable_nested_tensor=True)
    out.load_state_dict(encoder.state_dict(), strict=True)
    for (name, mine), (_, theirs) in zip(out.named_modules(), encoder.named_modules()):
        if isinstance(mine, nn.LayerNorm):
            mine.eps = theirs.eps  # not in the state dict: each norm keeps its own
    return out.to(dtype=next(encoder.parameters()).dtype)


@functools.lru_cache(maxsize=4)
def load(target: str):
    """(description, rebuilt encoder, reference module) of ``target``, loaded once per process (CPU)."""
    from ..user_model import load_model

    model = load_model(target)
    encoder = find_encoder(model, target)
    _check(encoder)
    cfg = read_config(encoder)
    shape = Shape(cfg["d_model"], cfg["nhead"], cfg["dim_feedforward"], cfg["num_layers"], cfg["activation"],
                  cfg["norm_first"])
    reference = zero_dropout(copy.deepcopy(encoder).cpu())
    built = rebuild(reference)
    return Description("user", target, shape, count_params(encoder), cfg), built, reference


def describe(target: str) -> Description:
    return load(target)[0]


def resolve(target: str, device: str, dtype) -> EncoderModel:
    """The user's encoder on ``device`` in ``dtype`` (a copy: the user's module is never touched)."""
    description, built, reference = load(target)
    return EncoderModel(description, copy_to(built, device, dtype), reference, device, dtype)
