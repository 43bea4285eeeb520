"""Triton backend of `varlen_attention`: FlashAttention-2 over packed variable-length sequences.

Layout: q/k/v/o are packed `[T, H, D]` (any token/head strides, unit stride on D); `offsets [B+1]`
gives each sequence's token range; the logsumexp is kept `[H, T]` in float32 (float64 for
float64 inputs), base 2.

Forward: one program per (query block of one sequence, head); grid axis 0 enumerates
`B * cdiv(max_seqlen, BLOCK_M)` (sequence-major), programs past the end of their sequence exit at
once. Each program streams the key/value blocks of its own sequence only, with an online
softmax (running max / running sum, exp2 with log2(e) folded into the scale) and fp32
accumulation; no score tensor bigger than one BLOCK_M x BLOCK_N tile ever exists.

Backward (standard FA2 recipe, atomic-free): `delta = rowsum(dO * O)`; one kernel per
(key block, head) accumulates dK and dV over its sequence's query blocks; one kernel per
(query block, head) accumulates dQ over its sequence's key blocks. Both recompute P from the
saved logsumexp.

Head dims that are not a power of two are padded to the next power of two (>= 16) with masks;
sequence tails are masked; an empty sequence owns no rows and launches nothing useful.

This module imports triton at import time, and triton's `@jit` decides at decoration time
whether kernels are compiled or interpreted (`TRITON_INTERPRET=1`). `INTERPRETED` records which.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from padbench.errors import UnsupportedError

__all__ = ["INTERPRETED", "triton_varlen_forward", "triton_varlen_backward", "block_config"]

LOG2E = 1.4426950408889634


@triton.jit
def _mm(a, b, PREC: tl.constexpr, UPCAST: tl.constexpr, ACC: tl.constexpr):
    """tl.dot with fp32/fp64 accumulation; UPCAST works around the interpreter's bf16 dot
    (triton-lang/triton#11584: it multiplies the raw bf16 bit patterns)."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, input_precision=PREC, out_dtype=ACC)


@triton.jit
def _scaled(x, hi, lo, FP64: tl.constexpr):
    """x * scale, where scale = hi + lo split into two fp32 scalars (fp64 needs both halves)."""
    if FP64:
        return x * hi + x * lo  # fp64 x fp32 scalars promotes to fp64 exactly
    else:
        return x * hi


@triton.jit
def _dim_mask(offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
    """Valid head-dim lanes; all-true (folded away by the compiler) when HEAD_DIM is a power of 2."""
    if HEAD_DIM == BLOCK_D:
        return tl.full([BLOCK_D], 1, tl.int1)
    else:
        return offs_d < HEAD_DIM


@triton.jit
def _varlen_fwd_kernel(
    Q, K, V, O, LSE, OFFS,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    stride_lh,
    qk_scale, qk_scale_lo,
    NUM_M_BLOCKS,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr, ACC: tl.constexpr, FP64: tl.constexpr,
):
    pid = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    seq = pid // NUM_M_BLOCKS
    mblk = pid % NUM_M_BLOCKS
    start = tl.load(OFFS + seq).to(tl.int64)
    seqlen = (tl.load(OFFS + seq + 1).to(tl.int64) - start).to(tl.int32)
    if mblk * BLOCK_M < seqlen:
        # 64-bit arithmetic only for the per-(sequence, head) base pointers; tile offsets are
        # 32-bit (the host checks max_seqlen * token stride < 2**31).
        q_base = Q + start * stride_qt + h * stride_qh
        k_base = K + start * stride_kt + h * stride_kh
        v_base = V + start * stride_vt + h * stride_vh
        offs_m = mblk * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        mask_m = offs_m < seqlen
        mask_d = _dim_mask(offs_d, HEAD_DIM, BLOCK_D)

        q = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :],
                    mask=mask_m[:, None] & mask_d[None, :], other=0.0)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=ACC)
        l_i = tl.zeros([BLOCK_M], dtype=ACC)
        acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=ACC)
        for start_n in range(0, seqlen, BLOCK_N):
            cols = start_n + offs_n
            mask_n = cols < seqlen
            kt = tl.load(k_base + cols[None, :] * stride_kt + offs_d[:, None],
                         mask=mask_d[:, None] & mask_n[None, :], other=0.0)
            s = _scaled(_mm(q, kt, DOT_PRECISION, UPCAST, ACC), qk_scale, qk_scale_lo, FP64)
            s = tl.where(mask_n[None, :], s, float("-inf"))
            # every key block holds at least one valid key, so m_new is finite
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(v_base + cols[:, None] * stride_vt + offs_d[None, :],
                        mask=mask_n[:, None] & mask_d[None, :], other=0.0)
            acc = acc * alpha[:, None] + _mm(p.to(v.dtype), v, DOT_PRECISION, UPCAST, ACC)
            m_i = m_new
        acc = acc / l_i[:, None]
        o_base = O + start * stride_ot + h * stride_oh
        tl.store(o_base + offs_m[:, None] * stride_ot + offs_d[None, :],
                 acc.to(O.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])
        tl.store(LSE + h * stride_lh + start + offs_m, m_i + tl.log2(l_i), mask=mask_m)


@triton.jit
def _varlen_bwd_preprocess(
    O, DO, DELTA,
    stride_ot, stride_oh, stride_dot, stride_doh, stride_lh,
    T,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, ACC: tl.constexpr,
):
    pid = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    row0 = pid.to(tl.int64) * BLOCK_T
    rows = tl.arange(0, BLOCK_T)
    offs_d = tl.arange(0, BLOCK_D)
    mask_t = row0 + rows < T
    mask = mask_t[:, None] & _dim_mask(offs_d, HEAD_DIM, BLOCK_D)[None, :]
    o = tl.load(O + row0 * stride_ot + h * stride_oh + rows[:, None] * stride_ot + offs_d[None, :],
                mask=mask, other=0.0)
    do = tl.load(DO + row0 * stride_dot + h * stride_doh + rows[:, None] * stride_dot + offs_d[None, :],
                 mask=mask, other=0.0)
    delta = tl.sum(o.to(ACC) * do.to(ACC), 1)
    tl.store(DELTA + h * stride_lh + row0 + rows, delta, mask=mask_t)


@triton.jit
def _varlen_bwd_dkdv_kernel(
    Q, K, V, DO, DK, DV, LSE, DELTA, OFFS,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
    stride_dot, stride_doh, stride_dkt, stride_dkh, stride_dvt, stride_dvh,
    stride_lh,
    qk_scale, qk_scale_lo, sm_scale, sm_scale_lo,
    NUM_N_BLOCKS,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr, ACC: tl.constexpr, FP64: tl.constexpr,
):
    pid = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    seq = pid // NUM_N_BLOCKS
    nblk = pid % NUM_N_BLOCKS
    start = tl.load(OFFS + seq).to(tl.int64)
    seqlen = (tl.load(OFFS + seq + 1).to(tl.int64) - start).to(tl.int32)
    if nblk * BLOCK_N < seqlen:
        q_base = Q + start * stride_qt + h * stride_qh
        k_base = K + start * stride_kt + h * stride_kh
        v_base = V + start * stride_vt + h * stride_vh
        do_base = DO + start * stride_dot + h * stride_doh
        lse_base = LSE + h * stride_lh + start
        delta_base = DELTA + h * stride_lh + start
        offs_n = nblk * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_m = tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        mask_n = offs_n < seqlen
        mask_d = _dim_mask(offs_d, HEAD_DIM, BLOCK_D)
        mask_nd = mask_n[:, None] & mask_d[None, :]

        k = tl.load(k_base + offs_n[:, None] * stride_kt + offs_d[None, :], mask=mask_nd, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :], mask=mask_nd, other=0.0)
        dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=ACC)
        dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=ACC)
        for start_m in range(0, seqlen, BLOCK_M):
            cols = start_m + offs_m
            mask_m = cols < seqlen
            qt = tl.load(q_base + cols[None, :] * stride_qt + offs_d[:, None],
                         mask=mask_d[:, None] & mask_m[None, :], other=0.0)
            lse = tl.load(lse_base + cols, mask=mask_m, other=0.0)
            st = _scaled(_mm(k, qt, DOT_PRECISION, UPCAST, ACC), qk_scale, qk_scale_lo, FP64)
            pt = tl.exp2(st - lse[None, :])
            pt = tl.where(mask_n[:, None] & mask_m[None, :], pt, 0.0)
            do = tl.load(do_base + cols[:, None] * stride_dot + offs_d[None, :],
                         mask=mask_m[:, None] & mask_d[None, :], other=0.0)
            dv += _mm(pt.to(do.dtype), do, DOT_PRECISION, UPCAST, ACC)
            delta = tl.load(delta_base + cols, mask=mask_m, other=0.0)
            dpt = _mm(v, tl.trans(do), DOT_PRECISION, UPCAST, ACC)
            dst = pt * (dpt - delta[None, :])
            dk += _mm(dst.to(qt.dtype), tl.trans(qt), DOT_PRECISION, UPCAST, ACC)
        dk = _scaled(dk, sm_scale, sm_scale_lo, FP64)
        dk_base = DK + start * stride_dkt + h * stride_dkh
        dv_base = DV + start * stride_dvt + h * stride_dvh
        tl.store(dk_base + offs_n[:, None] * stride_dkt + offs_d[None, :], dk.to(DK.dtype.element_ty), mask=mask_nd)
        tl.store(dv_base + offs_n[:, None] * stride_dvt + offs_d[None, :], dv.to(DV.dtype.element_ty), mask=mask_nd)


@triton.jit
def _varlen_bwd_dq_kernel(
    Q, K, V, DO, DQ, LSE, DELTA, OFFS,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
    stride_dot, stride_doh, stride_dqt, stride_dqh,
    stride_lh,
    qk_scale, qk_scale_lo, sm_scale, sm_scale_lo,
    NUM_M_BLOCKS,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr, ACC: tl.constexpr, FP64: tl.constexpr,
):
    pid = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    seq = pid // NUM_M_BLOCKS
    mblk = pid % NUM_M_BLOCKS
    start = tl.load(OFFS + seq).to(tl.int64)
    seqlen = (tl.load(OFFS + seq + 1).to(tl.int64) - start).to(tl.int32)
    if mblk * BLOCK_M < seqlen:
        q_base = Q + start * stride_qt + h * stride_qh
        k_base = K + start * stride_kt + h * stride_kh
        v_base = V + start * stride_vt + h * stride_vh
        do_base = DO + start * stride_dot + h * stride_doh
        offs_m = mblk * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        mask_m = offs_m < seqlen
        mask_d = _dim_mask(offs_d, HEAD_DIM, BLOCK_D)
        mask_md = mask_m[:, None] & mask_d[None, :]

        q = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :], mask=mask_md, other=0.0)
        do = tl.load(do_base + offs_m[:, None] * stride_dot + offs_d[None, :], mask=mask_md, other=0.0)
        lse = tl.load(LSE + h * stride_lh + start + offs_m, mask=mask_m, other=0.0)
        delta = tl.load(DELTA + h * stride_lh + start + offs_m, mask=mask_m, other=0.0)
        dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=ACC)
        for start_n in range(0, seqlen, BLOCK_N):
            cols = start_n + offs_n
            mask_n = cols < seqlen
            kt = tl.load(k_base + cols[None, :] * stride_kt + offs_d[:, None],
                         mask=mask_d[:, None] & mask_n[None, :], other=0.0)
            vt = tl.load(v_base + cols[None, :] * stride_vt + offs_d[:, None],
                         mask=mask_d[:, None] & mask_n[None, :], other=0.0)
            s = _scaled(_mm(q, kt, DOT_PRECISION, UPCAST, ACC), qk_scale, qk_scale_lo, FP64)
            p = tl.exp2(s - lse[:, None])
            p = tl.where(mask_m[:, None] & mask_n[None, :], p, 0.0)
            dp = _mm(do, vt, DOT_PRECISION, UPCAST, ACC)
            ds = p * (dp - delta[:, None])
            dq += _mm(ds.to(kt.dtype), tl.trans(kt), DOT_PRECISION, UPCAST, ACC)
        dq = _scaled(dq, sm_scale, sm_scale_lo, FP64)
        dq_base = DQ + start * stride_dqt + h * stride_dqh
        tl.store(dq_base + offs_m[:, None] * stride_dqt + offs_d[None, :], dq.to(DQ.dtype.element_ty), mask=mask_md)


INTERPRETED: bool = type(_varlen_fwd_kernel).__name__ == "InterpretedFunction"

# Tests may set this to force (BLOCK_M, BLOCK_N) for every kernel, e.g. (16, 16).
_BLOCK_OVERRIDE: tuple[int, int] | None = None


def _dot_precision(dtype: torch.dtype) -> str:
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 and not INTERPRETED:
        return "tf32"  # follow torch's own fp32 matmul setting (off by default)
    return "ieee"


# (BLOCK_M, BLOCK_N, num_warps, num_stages) per (dtype class, padded head dim), chosen from a static
# sweep on sm_90 (H100) with triton 3.9: `triton.compile` to PTX, `ptxas -v` for registers and
# spills; each entry is the largest tile with no register spills. Not timed on a GPU (none was
# available while writing this); retune with a timing sweep when one is.
_CONFIGS = {
    "fp16": {"fwd": {32: (128, 64, 4, 3), 64: (128, 64, 4, 3), 128: (64, 64, 4, 3), 256: (32, 32, 4, 2)},
             "bwd": {32: (64, 64, 4, 2), 64: (64, 64, 8, 2), 128: (32, 32, 4, 2), 256: (16, 32, 4, 1)}},
    # fp32 dots in IEEE precision run on FMA units and need far more registers per tile
    "fp32": {"fwd": {32: (64, 16, 4, 2), 64: (32, 32, 4, 2), 128: (32, 32, 8, 2), 256: (16, 16, 4, 1)},
             "bwd": {32: (16, 32, 4, 1), 64: (16, 32, 4, 1), 128: (16, 32, 8, 1), 256: (16, 16, 4, 1)}},
    "fp64": {"fwd": {32: (32, 16, 4, 1), 64: (32, 16, 4, 1), 128: (16, 16, 4, 1), 256: (16, 16, 4, 1)},
             "bwd": {32: (16, 16, 4, 1), 64: (16, 16, 4, 1), 128: (16, 16, 4, 1), 256: (16, 16, 4, 1)}},
}
_FALLBACK = (16, 16, 2, 1)


def block_config(kind: str, dtype: torch.dtype, head_dim: int) -> list[dict]:
    """Launch configurations to try, best first; smaller ones follow if resources run out.

    kind: "fwd" or "bwd". Under the interpreter (every program is numpy work) 32x32 tiles keep CI fast.
    """
    if _BLOCK_OVERRIDE is not None:
        bm, bn = _BLOCK_OVERRIDE
        return [dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=4, num_stages=1)]
    if INTERPRETED:
        return [dict(BLOCK_M=32, BLOCK_N=32, num_warps=4, num_stages=1)]
    cls = {torch.float16: "fp16", torch.bfloat16: "fp16", torch.float32: "fp32"}.get(dtype, "fp64")
    block_d = max(32, triton.next_power_of_2(head_dim))
    table = _CONFIGS[cls][kind]
    best = table[min(block_d, 256)]
    out = []
    for bm, bn, w, st in (best, _FALLBACK):
        out.append(dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=st))
    return out


_CHOSEN: dict = {}


def _launch(kind: str, dtype: torch.dtype, head_dim: int, fn):
    """Run `fn(cfg)` with the first configuration that fits the device (remembered per shape)."""
    key = (kind, dtype, head_dim, _BLOCK_OVERRIDE, INTERPRETED)
    cfgs = block_config(kind, dtype, head_dim)
    if key in _CHOSEN:
        cfgs = [_CHOSEN[key]]
    last = None
    for cfg in cfgs:
        try:
            out = fn(cfg)
        except triton.runtime.errors.OutOfResources as exc:  # shared memory / registers
            last = exc
            continue
        _CHOSEN[key] = cfg
        return out
    raise UnsupportedError(f"no Triton launch configuration fits this GPU for head_dim={head_dim}, "
                           f"dtype={dtype}: {last}")


def _check_int32(max_seqlen: int, *tensors) -> None:
    """Tile offsets inside one sequence are 32-bit: (max_seqlen + block) * token stride must fit."""
    limit = (max_seqlen + 256) * max(t.stride(0) for t in tensors)
    if limit >= 2 ** 31:
        raise UnsupportedError(f"sequence of {max_seqlen} tokens with token stride "
                               f"{max(t.stride(0) for t in tensors)} overflows the Triton kernels' "
                               "32-bit in-sequence offsets")


def _flash_cfg(cfg):
    return {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}


def _split(x: float) -> tuple[float, float]:
    """x = hi + lo with hi, lo exactly representable in float32 (kernel scalars are fp32)."""
    hi = float(torch.tensor(x, dtype=torch.float32))
    return hi, float(torch.tensor(x - hi, dtype=torch.float32))


def _dtype_flags(dtype: torch.dtype) -> dict:
    fp64 = dtype == torch.float64
    return dict(DOT_PRECISION=_dot_precision(dtype),
                UPCAST=INTERPRETED and dtype == torch.bfloat16,
                ACC=tl.float64 if fp64 else tl.float32, FP64=fp64)


def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def triton_varlen_forward(q, k, v, offsets, scale: float, max_seqlen: int):
    """Returns (out [T, H, D] like q, lse [H, T] in log2 units, float32 or float64)."""
    T, H, D = q.shape
    B = offsets.numel() - 1
    out = torch.empty((T, H, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((H, T), dtype=_stat_dtype(q.dtype), device=q.device)
    if T == 0 or max_seqlen == 0:
        return out, lse
    _check_int32(max_seqlen, q, k, v, out)
    block_d = max(16, triton.next_power_of_2(D))
    qk_hi, qk_lo = _split(scale * LOG2E)
    flags = _dtype_flags(q.dtype)

    def run(cfg):
        num_m = triton.cdiv(max_seqlen, cfg["BLOCK_M"])
        _varlen_fwd_kernel[(B * num_m, H)](
            q, k, v, out, lse, offsets,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            out.stride(0), out.stride(1), lse.stride(0),
            qk_hi, qk_lo, num_m,
            HEAD_DIM=D, BLOCK_D=block_d, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"],
            **flags, **_flash_cfg(cfg))

    _launch("fwd", q.dtype, D, run)
    return out, lse


def triton_varlen_backward(grad_out, q, k, v, out, lse, offsets, scale: float, max_seqlen: int):
    """Returns (dq, dk, dv), each [T, H, D] in the input dtype."""
    T, H, D = q.shape
    B = offsets.numel() - 1
    dq = torch.empty((T, H, D), dtype=q.dtype, device=q.device)
    dk = torch.empty((T, H, D), dtype=k.dtype, device=k.device)
    dv = torch.empty((T, H, D), dtype=v.dtype, device=v.device)
    if T == 0 or max_seqlen == 0:
        return dq, dk, dv
    _check_int32(max_seqlen, grad_out, q, k, v, out, dq, dk, dv)
    block_d = max(16, triton.next_power_of_2(D))
    flags = _dtype_flags(q.dtype)
    delta = torch.empty_like(lse)
    block_t = 64 if not INTERPRETED else 32
    _varlen_bwd_preprocess[(triton.cdiv(T, block_t), H)](
        out, grad_out, delta,
        out.stride(0), out.stride(1), grad_out.stride(0), grad_out.stride(1), delta.stride(0),
        T, HEAD_DIM=D, BLOCK_D=block_d, BLOCK_T=block_t, ACC=flags["ACC"])
    qk_hi, qk_lo = _split(scale * LOG2E)
    sm_hi, sm_lo = _split(scale)

    def run(cfg):
        bm, bn = cfg["BLOCK_M"], cfg["BLOCK_N"]
        num_n = triton.cdiv(max_seqlen, bn)
        _varlen_bwd_dkdv_kernel[(B * num_n, H)](
            q, k, v, grad_out, dk, dv, lse, delta, offsets,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            grad_out.stride(0), grad_out.stride(1), dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1),
            lse.stride(0), qk_hi, qk_lo, sm_hi, sm_lo, num_n,
            HEAD_DIM=D, BLOCK_D=block_d, BLOCK_M=bm, BLOCK_N=bn, **flags, **_flash_cfg(cfg))
        num_m = triton.cdiv(max_seqlen, bm)
        _varlen_bwd_dq_kernel[(B * num_m, H)](
            q, k, v, grad_out, dq, lse, delta, offsets,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            grad_out.stride(0), grad_out.stride(1), dq.stride(0), dq.stride(1),
            lse.stride(0), qk_hi, qk_lo, sm_hi, sm_lo, num_m,
            HEAD_DIM=D, BLOCK_D=block_d, BLOCK_M=bm, BLOCK_N=bn, **flags, **_flash_cfg(cfg))

    _launch("bwd", q.dtype, D, run)
    return dq, dk, dv
