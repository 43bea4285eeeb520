"""CPU backend of `varlen_attention`: PyTorch's fused CPU flash-attention kernel, one call per run.

Design (measured, see `padbench kernel`): packed `[T, H, D]` tensors are sliced into per-sequence
*views* `[1, H, L, D]` (no copy: the CPU flash kernel reads arbitrary batch/head/token strides),
and `aten::_scaled_dot_product_flash_attention_for_cpu` runs on each. Its output is laid out
`[B, L, H, D]` in memory, so transposing back is a view and a single `torch.cat` rebuilds the
packed output. Consecutive sequences of equal length are fused into one `[n, H, L, D]` call (one
call in all for constant lengths, which is exactly what the padded batch does, minus the pads).

Why not bucketing with a padding mask: on 2 threads the per-call overhead of the CPU kernel is
~10 µs, i.e. ~0.3 ms for 32 sequences, while the padding a bucket adds costs attention FLOPs
quadratically; a mask also forces the kernel to add an additive mask to every score tile. Why
the private aten ops instead of `F.scaled_dot_product_attention`: they return the logsumexp, so the
backward (`..._for_cpu_backward`) runs directly from the saved output without recomputing the
forward and without keeping an autograd graph per sequence.

Empty sequences are skipped: the CPU kernel crashes the process (SIGFPE) on a zero-length
sequence in torch 2.13, and an empty sequence contributes no rows to the packed output anyway.
"""

from __future__ import annotations

import torch

__all__ = ["available", "runs_from_offsets", "cpu_varlen_forward", "cpu_varlen_backward"]

_FWD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_BWD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)


def available() -> tuple[bool, str]:
    if _FWD is None or _BWD is None:
        return False, (f"torch {torch.__version__} has no aten::_scaled_dot_product_flash_attention_for_cpu "
                       "(needs torch >= 2.2)")
    return True, ""


def runs_from_offsets(offsets: list[int]) -> list[tuple[int, int, int]]:
    """Group consecutive non-empty sequences of equal length: list of (token_start, count, length).

    Python work is proportional to the number of sequences, never to the number of tokens.
    """
    runs: list[tuple[int, int, int]] = []
    for i in range(len(offsets) - 1):
        start, length = offsets[i], offsets[i + 1] - offsets[i]
        if length == 0:
            continue
        if runs and runs[-1][2] == length and runs[-1][0] + runs[-1][1] * length == start:
            s, n, _ = runs[-1]
            runs[-1] = (s, n + 1, length)
        else:
            runs.append((start, 1, length))
    return runs


def _view(x: torch.Tensor, start: int, n: int, length: int) -> torch.Tensor:
    """Packed [T, H, D] -> [n, H, L, D] view of `n` consecutive sequences of one length."""
    return x[start:start + n * length].unflatten(0, (n, length)).transpose(1, 2)


def _unview(y: torch.Tensor) -> torch.Tensor:
    """[n, H, L, D] (memory [n, L, H, D] as the CPU kernel lays it out) -> [n*L, H, D]."""
    return y.transpose(1, 2).reshape(-1, y.shape[1], y.shape[3])


def cpu_varlen_forward(q, k, v, runs, scale):
    """Returns (out [T, H, D], list of logsumexp per run)."""
    T, H, D = q.shape
    if not runs:
        return q.new_zeros(T, H, D), []
    outs, lses = [], []
    for start, n, length in runs:
        o, lse = _FWD(_view(q, start, n, length), _view(k, start, n, length), _view(v, start, n, length),
                      0.0, False, attn_mask=None, scale=scale)
        outs.append(_unview(o))
        lses.append(lse)
    out = torch.cat(outs) if len(outs) > 1 else outs[0].contiguous()
    if out.shape[0] != T:  # leading/trailing tokens can only be missing if offsets were not validated
        raise AssertionError("runs do not cover all tokens")
    return out, lses


def cpu_varlen_backward(grad_out, q, k, v, out, lses, runs, scale):
    T, H, D = q.shape
    if not runs:
        z = q.new_zeros(T, H, D)
        return z, z.clone(), z.clone()
    dqs, dks, dvs = [], [], []
    for (start, n, length), lse in zip(runs, lses):
        dq, dk, dv = _BWD(_view(grad_out, start, n, length), _view(q, start, n, length),
                          _view(k, start, n, length), _view(v, start, n, length),
                          _view(out, start, n, length), lse, 0.0, False, attn_mask=None, scale=scale)
        dqs.append(_unview(dq))
        dks.append(_unview(dk))
        dvs.append(_unview(dv))
    if len(runs) == 1:
        return dqs[0].contiguous(), dks[0].contiguous(), dvs[0].contiguous()
    return torch.cat(dqs), torch.cat(dks), torch.cat(dvs)
