"""Fallback CPU path of `varlen_attention`: PyTorch's fused CPU flash-attention kernel, one call
per distinct sequence length. It runs for bf16/fp16 and where padbench's C++ kernel
(`cpu_extension`) cannot be built; that kernel replaced it for float32/float64 because each call
here is its own OpenMP region (`padbench kernel --device cpu --threads 2`, batch of 32, 4 heads
of 64: forward 8.15 against 5.16 ms on uniform lengths, 4.79 against 2.89 ms on lognormal).

Design (measured with `padbench kernel`, numbers in the module's commit messages and report):

- Sequences are grouped by length. A group of sequences that sit next to each other in the
  packed tensor is a *view* `[n, H, L, D]` of the packed `[T, H, D]` input (no copy: the CPU
  flash kernel reads arbitrary batch/head/token strides). Equal lengths scattered across the
  batch are gathered with one `index_select` per tensor (a copy of `n*L` rows, small next to the
  `O(n*L^2)` attention) so that they still share one kernel call. Constant lengths are exactly
  one call on a view, like the padded batch minus the pads.
- `aten::_scaled_dot_product_flash_attention_for_cpu` runs once per group, unmasked (a mask
  costs ~40% in that kernel even when nothing is masked, and padding costs quadratically).
  Its output is laid out `[n, L, H, D]` in memory, so going back to packed rows is a view.
- The backward calls `..._for_cpu_backward` per group from the saved output and logsumexp:
  no recomputation of the forward, no autograd graph per sequence. (Autograd through
  per-sequence `F.scaled_dot_product_attention` measured ~3.5x slower on the backward.)
- Python work is per sequence (grouping) and per group (calls), never per token.

Why not buckets of similar lengths padded under a mask: measured slower at every bucket count
on uniform/lognormal/constant batches of 32 (mask overhead plus padding FLOPs outweigh the
saved per-call overhead of ~10-15 us).

Caveat measured on a shared 2-core machine: every kernel call is one OpenMP parallel region,
and when other processes occupy the cores each region can wait a scheduler time slice for its
second thread, so many short calls degrade far more than one long call under CPU contention
(on a quiet machine, or with 1 thread, per-call overhead is ~10 us).

Empty sequences are skipped: the CPU kernel crashes the process (SIGFPE) on a zero-length
sequence in torch 2.13, and an empty sequence owns no rows anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["available", "Group", "plan_groups", "runs_from_offsets", "cpu_varlen_forward", "cpu_varlen_backward"]

_FWD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_BWD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)


def available() -> tuple[bool, str]:
    if _FWD is None or _BWD is None:
        return False, (f"torch {torch.__version__} has no aten::_scaled_dot_product_flash_attention_for_cpu "
                       "(needs torch >= 2.2)")
    return True, ""


@dataclass(frozen=True)
class Group:
    """`count` sequences of `length` tokens: contiguous from `start` if `index` is None, else
    gathered by `index` (int64 [count*length] packed rows)."""

    length: int
    count: int
    start: int = 0
    index: torch.Tensor | None = None


def runs_from_offsets(offsets: list[int]) -> list[tuple[int, int, int]]:
    """Consecutive non-empty sequences of equal length as (token_start, count, length)."""
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


def plan_groups(offsets: list[int], device: torch.device | str = "cpu") -> list[Group]:
    """One group per distinct length (a view when its sequences are contiguous, else a gather)."""
    by_len: dict[int, list[tuple[int, int]]] = {}
    for start, n, length in runs_from_offsets(offsets):
        by_len.setdefault(length, []).append((start, n))
    groups = []
    for length, runs in by_len.items():
        if len(runs) == 1:
            start, n = runs[0]
            groups.append(Group(length, n, start))
            continue
        count = sum(n for _, n in runs)
        index = torch.cat([torch.arange(s, s + n * length) for s, n in runs]).to(device)
        groups.append(Group(length, count, index=index))
    return groups


def _take(x: torch.Tensor, g: Group) -> torch.Tensor:
    """Packed [T, H, D] -> [n, H, L, D] for group g (a view, or a gathered copy)."""
    rows = x[g.start:g.start + g.count * g.length] if g.index is None else x.index_select(0, g.index)
    return rows.unflatten(0, (g.count, g.length)).transpose(1, 2)


def _rows(y: torch.Tensor) -> torch.Tensor:
    """[n, H, L, D] (memory [n, L, H, D] as the CPU kernel lays it out) -> [n*L, H, D]."""
    return y.transpose(1, 2).reshape(-1, y.shape[1], y.shape[3])


def _put(dst: torch.Tensor, g: Group, rows: torch.Tensor) -> None:
    if g.index is None:
        dst[g.start:g.start + g.count * g.length].copy_(rows)
    else:
        dst.index_copy_(0, g.index, rows)


def _covers_all(groups: list[Group], T: int) -> bool:
    return len(groups) == 1 and groups[0].index is None and groups[0].count * groups[0].length == T


def cpu_varlen_forward(q, k, v, groups: list[Group], scale):
    """Returns (out [T, H, D], list of logsumexp per group)."""
    T, H, D = q.shape
    lses = []
    if _covers_all(groups, T):  # constant lengths: one call, the output is already packed
        o, lse = _FWD(_take(q, groups[0]), _take(k, groups[0]), _take(v, groups[0]), 0.0, False, scale=scale)
        return _rows(o), [lse]
    out = q.new_zeros(T, H, D) if not groups else q.new_empty(T, H, D)
    for g in groups:
        o, lse = _FWD(_take(q, g), _take(k, g), _take(v, g), 0.0, False, scale=scale)
        _put(out, g, _rows(o))
        lses.append(lse)
    return out, lses


def cpu_varlen_backward(grad_out, q, k, v, out, lses, groups: list[Group], scale):
    T, H, D = q.shape
    if _covers_all(groups, T):
        g = groups[0]
        dq, dk, dv = _BWD(_take(grad_out, g), _take(q, g), _take(k, g), _take(v, g), _take(out, g),
                          lses[0], 0.0, False, scale=scale)
        return _rows(dq), _rows(dk), _rows(dv)
    new = q.new_zeros if not groups else q.new_empty
    dq, dk, dv = new(T, H, D), new(T, H, D), new(T, H, D)
    for g, lse in zip(groups, lses):
        gq, gk, gv = _BWD(_take(grad_out, g), _take(q, g), _take(k, g), _take(v, g), _take(out, g),
                          lse, 0.0, False, scale=scale)
        _put(dq, g, _rows(gq))
        _put(dk, g, _rows(gk))
        _put(dv, g, _rows(gv))
    return dq, dk, dv
