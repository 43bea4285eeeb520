"""`varlen_attention`: bidirectional attention over packed variable-length sequences.

    out = varlen_attention(q, k, v, offsets)          # q, k, v: [T, H, head_dim]; offsets: [B+1]

Sequence i owns tokens `offsets[i]:offsets[i+1]` and attends only to itself (no causal mask).
An empty sequence (repeated offset) owns no rows; it never produces NaN in the output or in any
gradient. Forward and backward are autograd-aware (`torch.autograd.Function`, first order).

Backends:
- "triton": FlashAttention-2 kernels (`padbench.kernels.triton_attention`) for CUDA tensors, or
  CPU tensors under the Triton interpreter (`TRITON_INTERPRET=1` set before that module is
  first imported). fp16/bf16/fp32 (fp32 accumulation; fp32 dots in IEEE precision unless
  `torch.backends.cuda.matmul.allow_tf32` is on), fp64 accepted.
- "cpu": padbench's C++ kernel (`csrc/varlen_attention_cpu.cpp`, built on first use by
  `padbench.kernels.cpu_extension`) for float32/float64: one parallel region over every
  (sequence, head, query block), forward and backward, on strided views of the packed tensors.
  For bf16/fp16, or where the kernel cannot be built, PyTorch's fused CPU flash-attention
  kernel, one call per distinct length (`padbench.kernels.cpu_attention`).
  `cpu_implementation(dtype)` says which one runs.
- None: "triton" for CUDA tensors, "cpu" for CPU tensors.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from padbench.errors import PadbenchError, UnsupportedError
from padbench.kernels import cpu_attention, cpu_extension

__all__ = [
    "varlen_attention", "reference_varlen_attention", "backend_available", "cpu_implementation",
    "flash_per_length", "BACKENDS",
]

BACKENDS = ("triton", "cpu")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_MAX_TRITON_HEAD_DIM = 256


# --------------------------------------------------------------------------- backends

def _triton_module():
    """Import the Triton backend lazily (importing triton is slow and optional)."""
    try:
        from padbench.kernels import triton_attention
    except ImportError as exc:
        raise UnsupportedError(
            f"backend='triton' needs the triton package ({exc}); install it with "
            "`pip install 'padbench[triton]'` or use backend='cpu' on CPU tensors") from exc
    return triton_attention


def _resolve_backend(backend: str | None, device: torch.device) -> str:
    if backend is None:
        if device.type == "cuda":
            backend = "triton"
        elif device.type == "cpu":
            backend = "cpu"
        else:
            raise UnsupportedError(f"varlen_attention has no backend for {device.type} tensors "
                                   "(supported: cpu, cuda)")
    if backend not in BACKENDS:
        raise PadbenchError(f"backend must be 'triton', 'cpu' or None, got {backend!r}")
    if backend == "cpu":
        if device.type != "cpu":
            raise UnsupportedError(f"backend='cpu' needs CPU tensors, got {device} tensors; "
                                   "use backend='triton' (or None) for CUDA tensors")
        ok, why = cpu_attention.available()
        if not ok:
            raise UnsupportedError(why)
    else:
        if device.type not in ("cuda", "cpu"):
            raise UnsupportedError(f"backend='triton' needs CUDA tensors (or CPU tensors under "
                                   f"TRITON_INTERPRET=1), got {device} tensors")
        ta = _triton_module()
        if device.type == "cpu" and not ta.INTERPRETED:
            raise UnsupportedError(
                "backend='triton' on CPU tensors runs only under the Triton interpreter: set "
                "TRITON_INTERPRET=1 in the environment before padbench.kernels.triton_attention "
                "is first imported (i.e. before the first triton-backend call in this process), "
                "or use backend='cpu'")
    return backend


def backend_available(backend: str | None = None, device: str | torch.device = "cpu") -> tuple[bool, str]:
    """(True, "") if `varlen_attention(..., backend=backend)` can run on `device`, else (False, why)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return False, "CUDA is not available in this torch build / machine"
    try:
        _resolve_backend(backend, device)
    except PadbenchError as exc:
        return False, str(exc)
    return True, ""


def cpu_implementation(dtype: torch.dtype = torch.float32) -> str:
    """Which code backend='cpu' runs for `dtype` here, in words (recorded with every result)."""
    if dtype in cpu_extension.DTYPES:
        ok, what = cpu_extension.load()
        if ok:
            return what
        return f"PyTorch flash kernel per length ({what})"
    return f"PyTorch flash kernel per length (padbench's C++ kernel covers float32/float64, not {dtype})"


# --------------------------------------------------------------------------- validation

def _check_inputs(q, k, v, offsets, scale, max_seqlen, check: bool):
    """Validate; returns (scale, offsets_list or None, max_seqlen or None)."""
    for name, x in (("q", q), ("k", k), ("v", v), ("offsets", offsets)):
        if not isinstance(x, torch.Tensor):
            raise PadbenchError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if q.dim() != 3:
        raise PadbenchError(f"q must be packed [T, H, head_dim] (3-D), got shape {tuple(q.shape)}")
    if k.shape != q.shape or v.shape != q.shape:
        raise PadbenchError(f"q, k, v must have the same shape [T, H, head_dim]; got q {tuple(q.shape)}, "
                            f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.dtype not in _FLOAT_DTYPES:
        raise PadbenchError(f"q/k/v dtype must be one of float16, bfloat16, float32, float64; got {q.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise PadbenchError(f"q, k, v must share one dtype; got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if not (q.device == k.device == v.device == offsets.device):
        raise PadbenchError(f"q, k, v and offsets must be on one device; got q {q.device}, k {k.device}, "
                            f"v {v.device}, offsets {offsets.device}")
    if q.is_nested or q.layout != torch.strided:
        raise PadbenchError("q, k, v must be dense packed tensors (not nested/sparse)")
    T, H, D = q.shape
    if H < 1 or D < 1:
        raise PadbenchError(f"q needs at least one head and head_dim >= 1, got shape {tuple(q.shape)}")
    if offsets.dim() != 1 or offsets.numel() < 1:
        raise PadbenchError(f"offsets must be 1-D [B+1] cumulative lengths, got shape {tuple(offsets.shape)}")
    if offsets.dtype not in (torch.int32, torch.int64):
        raise PadbenchError(f"offsets dtype must be int32 or int64, got {offsets.dtype}")
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    else:
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise PadbenchError(f"scale must be a number, got {scale!r}") from None
        if not math.isfinite(scale):
            raise PadbenchError(f"scale must be finite, got {scale}")
    if max_seqlen is not None:
        if isinstance(max_seqlen, bool) or not isinstance(max_seqlen, int) or max_seqlen < 0:
            raise PadbenchError(f"max_seqlen must be a non-negative int or None, got {max_seqlen!r}")

    offs = None
    if check or offsets.device.type == "cpu":
        offs = offsets.tolist()  # B+1 ints: one host sync on CUDA, nothing on CPU
        if offs[0] != 0:
            raise PadbenchError(f"offsets must start at 0, got offsets[0] = {offs[0]}")
        if offs[-1] != T:
            raise PadbenchError(f"offsets must end at the number of packed tokens T = {T}, "
                                f"got offsets[-1] = {offs[-1]}")
        longest = 0
        for i in range(len(offs) - 1):
            n = offs[i + 1] - offs[i]
            if n < 0:
                raise PadbenchError(f"offsets must be non-decreasing, but offsets[{i + 1}] = {offs[i + 1]} "
                                    f"< offsets[{i}] = {offs[i]}")
            longest = max(longest, n)
        if max_seqlen is not None and max_seqlen < longest:
            raise PadbenchError(f"max_seqlen = {max_seqlen} is shorter than the longest sequence ({longest})")
        if max_seqlen is None:
            max_seqlen = longest
    return scale, offs, max_seqlen


def _check_finite(out, q, k, v):
    """NaN/Inf detection: one sum per tensor (cheap), exact element-wise diagnosis only on failure.

    All of q, k and v are checked: the output alone does not reveal them (PyTorch's CPU flash
    kernel turns a query row containing NaN into a zero output row).
    """
    with torch.no_grad():
        acc = torch.float64 if q.dtype == torch.float64 else torch.float32
        for name, x in (("q", q), ("k", k), ("v", v)):
            if x.numel() == 0 or bool(torch.isfinite(x.sum(dtype=acc))):
                continue
            bad = ~torch.isfinite(x)
            if bool(bad.any()):  # else only the sum overflowed
                token = int(bad.nonzero()[0, 0])
                raise PadbenchError(f"{name} contains NaN or Inf (first at packed token {token})")
        if out.numel() and not bool(torch.isfinite(out.sum(dtype=acc))) and not bool(torch.isfinite(out).all()):
            raise PadbenchError("varlen_attention produced NaN/Inf from finite inputs: the attention "
                                "scores overflow; scale q/k down or use a wider dtype")


# --------------------------------------------------------------------------- autograd

class _CompiledCpuVarlenAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, offsets, scale):
        q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
        offsets = offsets.to(torch.int64)
        out, lse = torch.ops.padbench.varlen_attention_fwd(q, k, v, offsets, scale)
        ctx.save_for_backward(q, k, v, out, lse, offsets)
        ctx.scale = scale
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out, lse, offsets = ctx.saved_tensors
        if grad_out.stride(-1) != 1:
            grad_out = grad_out.contiguous()
        dq, dk, dv = torch.ops.padbench.varlen_attention_bwd(grad_out, q, k, v, out, lse, offsets, ctx.scale)
        return dq, dk, dv, None, None


class _CpuVarlenAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, groups, scale):
        out, lses = cpu_attention.cpu_varlen_forward(q, k, v, groups, scale)
        ctx.save_for_backward(q, k, v, out)
        ctx.lses = lses
        ctx.groups = groups
        ctx.scale = scale
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out = ctx.saved_tensors
        if not grad_out.is_contiguous():
            grad_out = grad_out.contiguous()
        dq, dk, dv = cpu_attention.cpu_varlen_backward(grad_out, q, k, v, out, ctx.lses, ctx.groups, ctx.scale)
        return dq, dk, dv, None, None


class _TritonVarlenAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, offsets, scale, max_seqlen):
        ta = _triton_module()
        q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
        offsets = offsets.contiguous()
        out, lse = ta.triton_varlen_forward(q, k, v, offsets, scale, max_seqlen)
        ctx.save_for_backward(q, k, v, out, lse, offsets)
        ctx.scale = scale
        ctx.max_seqlen = max_seqlen
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        ta = _triton_module()
        q, k, v, out, lse, offsets = ctx.saved_tensors
        if grad_out.stride(-1) != 1 or 0 in grad_out.stride():
            grad_out = grad_out.contiguous()
        dq, dk, dv = ta.triton_varlen_backward(grad_out, q, k, v, out, lse, offsets, ctx.scale, ctx.max_seqlen)
        return dq, dk, dv, None, None, None


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor, *,
                     scale: float | None = None, backend: str | None = None,
                     max_seqlen: int | None = None, check: bool = True) -> torch.Tensor:
    """Attention of each packed sequence to itself.

    q, k, v: [T, H, head_dim], one float dtype, unit stride on head_dim preferred (views of a
    fused projection such as `qkv.unflatten(-1, (3, H, D)).unbind(1)` are fine).
    offsets: [B+1] int32/int64 cumulative lengths on the same device: 0 = offsets[0] <= ... <= offsets[B] = T.
    scale: softmax scale, default 1/sqrt(head_dim).
    backend: "triton", "cpu" or None (triton for CUDA tensors, cpu for CPU tensors).
    max_seqlen: longest sequence, optional; lets the Triton path size its grid without reading
      offsets on the host (together with check=False: no host sync at all).
    check: validate offsets values and detect NaN/Inf in q, k, v and the output (one sum per
      tensor, ~5% of the op's CPU time at T~4.5k; on CUDA host syncs). Shapes, dtypes and
      devices are always checked; check=False skips only the value checks that cost time.

    Returns [T, H, head_dim] in q's dtype. Raises PadbenchError for bad input, UnsupportedError
    when the backend cannot run here.
    """
    scale, offs, max_seqlen = _check_inputs(q, k, v, offsets, scale, max_seqlen, check)
    which = _resolve_backend(backend, q.device)
    if which == "cpu" and cpu_extension.covers(q.dtype):
        out = _CompiledCpuVarlenAttention.apply(q, k, v, offsets, scale)
    elif which == "cpu":
        out = _flash_per_length(q, k, v, offs, scale)
    else:
        if q.shape[2] > _MAX_TRITON_HEAD_DIM:
            raise UnsupportedError(f"backend='triton' supports head_dim <= {_MAX_TRITON_HEAD_DIM}, "
                                   f"got {q.shape[2]}")
        if max_seqlen is None:  # check=False on CUDA without max_seqlen: one host read
            lengths = offsets[1:] - offsets[:-1]
            max_seqlen = int(lengths.max()) if lengths.numel() else 0
        out = _TritonVarlenAttention.apply(q, k, v, offsets, scale, max_seqlen)
    if check:
        _check_finite(out, q, k, v)
    return out


def flash_per_length(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor, *,
                     scale: float | None = None) -> torch.Tensor:
    """backend='cpu''s fallback called directly: PyTorch's CPU flash kernel once per distinct
    length (`cpu_attention`), so benchmarks and tests can set it beside the C++ kernel."""
    scale, offs, _ = _check_inputs(q, k, v, offsets, scale, None, True)
    _resolve_backend("cpu", q.device)  # CPU tensors, and a torch with the flash kernel
    return _flash_per_length(q, k, v, offs, scale)


def _flash_per_length(q, k, v, offs: list[int], scale: float) -> torch.Tensor:
    return _CpuVarlenAttention.apply(q, k, v, cpu_attention.plan_groups(offs, q.device), scale)


# --------------------------------------------------------------------------- reference

def reference_varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor, *,
                               scale: float | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Dense per-sequence softmax attention in `dtype` (float64 by default): the ground truth.

    Differentiable (plain autograd ops); an empty sequence contributes no rows.
    """
    T, H, D = q.shape
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    offs = offsets.tolist()
    outs = []
    for i in range(len(offs) - 1):
        s, e = offs[i], offs[i + 1]
        if e == s:
            continue
        qi, ki, vi = (x[s:e].to(dtype).transpose(0, 1) for x in (q, k, v))  # [H, L, D]
        p = torch.softmax(qi @ ki.transpose(-1, -2) * scale, dim=-1)
        outs.append((p @ vi).transpose(0, 1))
    if not outs:
        return q.new_zeros(T, H, D, dtype=dtype)
    return torch.cat(outs)
