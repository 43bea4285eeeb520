"""The reference encoder's math, written once over any token-major tensor.

`encoder_forward(encoder, x, attend)` runs the weights of a reference ``nn.TransformerEncoder``
on ``x`` whose last dim is d_model: packed ``[T, d]`` tokens, a jagged nested tensor, a
``[1, L, d]`` sequence. Only attention needs to know where sequences begin and end, so a
strategy supplies ``attend(q, k, v)`` (last dim d_model, heads not yet split) and every dense
layer (projections, FFN, LayerNorm) runs on real tokens alone.

Without autograd, packed ``[T, d]`` tokens take a faster route to the same math. On CPU in
float32/float64 that is padbench's C++ dense layers (`padbench.kernels.cpu_extension`): the QKV
projection and everything after attention run block by block of 64 tokens per thread with
weights packed once (default model, 2 threads, uniform lengths: 63.7-65.2 ms a batch against
66.0-69.0 ms with torch's ops; `cpu_dense_layers` says which ran). Every packed-token strategy
gets the same dense layers, so they differ only in attention. Elsewhere (CUDA, half
precision, no C++ build, an activation other than relu or exact gelu) it is
`_dense_block_inplace`: bias, residual and activation applied in place in reused chunk buffers.
On CPU the plain version allocates and faults in a fresh ``[T, dim_feedforward]`` temporary per
op once it is past glibc's mmap threshold (measured end to end, default model, 2 threads:
constant lengths, T = 8192, 131-146 ms against 158-165 ms a batch).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import cpu_extension

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _activation(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    act = layer.activation
    return act(x) if callable(act) else F.relu(x)


def _attention(layer: nn.TransformerEncoderLayer, x: torch.Tensor, attend: Attend, linear=F.linear) -> torch.Tensor:
    """QKV projection (by ``linear``) and attention, heads merged, before the output projection."""
    mha = layer.self_attn
    q, k, v = linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    return attend(q, k, v)


def _self_attention(layer: nn.TransformerEncoderLayer, x: torch.Tensor, attend: Attend) -> torch.Tensor:
    out_proj = layer.self_attn.out_proj
    return F.linear(_attention(layer, x, attend), out_proj.weight, out_proj.bias)


def _feed_forward(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    return layer.linear2(_activation(layer, layer.linear1(x)))


# Tokens per chunk of the in-place dense block on CPU: keeps the [chunk, dim_feedforward]
# intermediate near cache and the workspace bounded; on GPU one chunk (large GEMMs are faster).
CPU_CHUNK_TOKENS = 2048


def _gelu_flag(layer: nn.TransformerEncoderLayer) -> bool | None:
    """The C++ dense layers' activation: False for relu, True for exact gelu, None for any other."""
    act = layer.activation
    if act is F.relu or isinstance(act, nn.ReLU):
        return False
    if act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
        return True
    return None


def _inplace_activation(layer: nn.TransformerEncoderLayer, h: torch.Tensor) -> torch.Tensor:
    gelu = _gelu_flag(layer)
    if gelu is None:
        return h.copy_(_activation(layer, h))
    return torch.ops.aten.gelu_(h) if gelu else h.relu_()


def _dense_block_inplace(layer: nn.TransformerEncoderLayer, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Everything after attention (out projection, residuals, norms, FFN) on ``[T, d]`` tokens,
    chunk by chunk into reused buffers. ``a`` is attention's output, heads merged."""
    out_proj, lin1, lin2 = layer.self_attn.out_proj, layer.linear1, layer.linear2
    tokens = x.shape[0]
    chunk = max(1, min(tokens, CPU_CHUNK_TOKENS if x.device.type == "cpu" else tokens))
    out = torch.empty_like(x)
    y_buf, z_buf = x.new_empty(chunk, x.shape[1]), x.new_empty(chunk, x.shape[1])
    h_buf = x.new_empty(chunk, lin1.out_features)
    for start in range(0, tokens, chunk):
        stop = min(start + chunk, tokens)
        n = stop - start
        xs = x[start:stop]
        y = torch.addmm(xs, a[start:stop], out_proj.weight.t(), out=y_buf[:n])
        if out_proj.bias is not None:
            y.add_(out_proj.bias)
        if not layer.norm_first:
            y = layer.norm1(y)
        ffn_in = layer.norm2(y) if layer.norm_first else y
        if lin1.bias is not None:
            h = torch.addmm(lin1.bias, ffn_in, lin1.weight.t(), out=h_buf[:n])
        else:
            h = torch.mm(ffn_in, lin1.weight.t(), out=h_buf[:n])
        h = _inplace_activation(layer, h)
        z = torch.addmm(y, h, lin2.weight.t(), out=z_buf[:n])
        if lin2.bias is not None:
            z.add_(lin2.bias)
        out[start:stop] = z if layer.norm_first else layer.norm2(z)
    return out


def _use_cpp(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and _gelu_flag(layer) is not None and cpu_extension.covers(x.dtype)


def _cpp_dense_block(layer: nn.TransformerEncoderLayer, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """`_dense_block_inplace`'s math by padbench's C++ dense layers. ``a`` is attention's output."""
    mha, n1, n2 = layer.self_attn, layer.norm1, layer.norm2
    return torch.ops.padbench.dense_block(
        x, a, mha.out_proj.weight, mha.out_proj.bias, layer.linear1.weight, layer.linear1.bias,
        layer.linear2.weight, layer.linear2.bias, n1.weight, n1.bias, n1.eps, n2.weight, n2.bias, n2.eps,
        layer.norm_first, _gelu_flag(layer))


def cpu_dense_layers() -> str:
    """What runs packed tokens' dense layers at CPU inference here, in words (recorded with results)."""
    ok, what = cpu_extension.load()
    return f"padbench C++ dense layers ({cpu_extension.route()})" if ok else f"PyTorch ops in place ({what})"


def _use_inplace(x: torch.Tensor) -> bool:
    return not torch.is_grad_enabled() and not x.is_nested and x.dim() == 2 and x.layout == torch.strided


def layer_forward(layer: nn.TransformerEncoderLayer, x: torch.Tensor, attend: Attend) -> torch.Tensor:
    if _use_inplace(x):
        attn_in = layer.norm1(x) if layer.norm_first else x
        if _use_cpp(layer, x):
            return _cpp_dense_block(layer, x, _attention(layer, attn_in, attend, torch.ops.padbench.linear))
        return _dense_block_inplace(layer, x, _attention(layer, attn_in, attend))
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
