"""The reference encoder's math, written once over any token-major tensor.

`encoder_forward(encoder, x, attend)` runs the weights of a reference ``nn.TransformerEncoder``
on ``x`` whose last dim is d_model: packed ``[T, d]`` tokens, a jagged nested tensor, a
``[1, L, d]`` sequence. Only attention needs to know where sequences begin and end, so a
strategy supplies ``attend(q, k, v)`` (last dim d_model, heads not yet split) and every dense
layer (projections, FFN, LayerNorm) runs on real tokens alone.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _activation(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    act = layer.activation
    return act(x) if callable(act) else F.relu(x)


def _self_attention(layer: nn.TransformerEncoderLayer, x: torch.Tensor, attend: Attend) -> torch.Tensor:
    mha = layer.self_attn
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    return F.linear(attend(q, k, v), mha.out_proj.weight, mha.out_proj.bias)


def _feed_forward(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    return layer.linear2(_activation(layer, layer.linear1(x)))


def layer_forward(layer: nn.TransformerEncoderLayer, x: torch.Tensor, attend: Attend) -> torch.Tensor:
    if layer.norm_first:
        x = x + _self_attention(layer, layer.norm1(x), attend)
        return x + _feed_forward(layer, layer.norm2(x))
    x = layer.norm1(x + _self_attention(layer, x, attend))
    return layer.norm2(x + _feed_forward(layer, x))


def encoder_forward(encoder: nn.TransformerEncoder, x: torch.Tensor, attend: Attend) -> torch.Tensor:
    for layer in encoder.layers:
        x = layer_forward(layer, x, attend)
    if encoder.norm is not None:
        x = encoder.norm(x)
    return x


def split_heads(t: torch.Tensor, nhead: int) -> torch.Tensor:
    """``[..., d]`` -> ``[..., H, d/H]``."""
    return t.unflatten(-1, (nhead, t.shape[-1] // nhead))
