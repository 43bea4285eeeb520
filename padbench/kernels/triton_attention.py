"""Triton backend of `varlen_attention`: FlashAttention-2 over packed variable-length sequences.

Layout: q/k/v/o are packed `[T, H, D]` (any token/head strides, unit stride on D); `offsets [B+1]`
gives each sequence's token range; the logsumexp is kept `[H, T]` in float32, base 2.

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
def _varlen_fwd_kernel(
    Q, K, V, O, LSE, OFFS,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    stride_lh,
    qk_scale,
    NUM_M_BLOCKS,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    seq = pid // NUM_M_BLOCKS
    mblk = pid % NUM_M_BLOCKS
    start = tl.load(OFFS + seq).to(tl.int64)
    seqlen = (tl.load(OFFS + seq + 1).to(tl.int64) - start).to(tl.int32)
    if mblk * BLOCK_M < seqlen:
        offs_m = mblk * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        mask_m = offs_m < seqlen
        mask_d = offs_d < HEAD_DIM
        rows_m = start + offs_m.to(tl.int64)

        q = tl.load(Q + h * stride_qh + rows_m[:, None] * stride_qt + offs_d[None, :],
                    mask=mask_m[:, None] & mask_d[None, :], other=0.0)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        for start_n in range(0, seqlen, BLOCK_N):
            cols = start_n + offs_n
            mask_n = cols < seqlen
            rows_n = start + cols.to(tl.int64)
            kt = tl.load(K + h * stride_kh + rows_n[None, :] * stride_kt + offs_d[:, None],
                         mask=mask_d[:, None] & mask_n[None, :], other=0.0)
            s = tl.dot(q, kt, input_precision=DOT_PRECISION, out_dtype=tl.float32) * qk_scale
            s = tl.where(mask_n[None, :], s, float("-inf"))
            # every key block holds at least one valid key, so m_new is finite
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(V + h * stride_vh + rows_n[:, None] * stride_vt + offs_d[None, :],
                        mask=mask_n[:, None] & mask_d[None, :], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION,
                                                out_dtype=tl.float32)
            m_i = m_new
        acc = acc / l_i[:, None]
        tl.store(O + h * stride_oh + rows_m[:, None] * stride_ot + offs_d[None, :],
                 acc.to(O.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])
        tl.store(LSE + h * stride_lh + rows_m, m_i + tl.log2(l_i), mask=mask_m)


@triton.jit
def _varlen_bwd_preprocess(
    O, DO, DELTA,
    stride_ot, stride_oh, stride_dot, stride_doh, stride_lh,
    T,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr,
):
    pid = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    rows = pid * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_d = tl.arange(0, BLOCK_D)
    mask_t = rows < T
    mask = mask_t[:, None] & (offs_d < HEAD_DIM)[None, :]
    rows64 = rows.to(tl.int64)
    o = tl.load(O + h * stride_oh + rows64[:, None] * stride_ot + offs_d[None, :], mask=mask, other=0.0)
    do = tl.load(DO + h * stride_doh + rows64[:, None] * stride_dot + offs_d[None, :], mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + h * stride_lh + rows64, delta, mask=mask_t)


@triton.jit
def _varlen_bwd_dkdv_kernel(
    Q, K, V, DO, DK, DV, LSE, DELTA, OFFS,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
    stride_dot, stride_doh, stride_dkt, stride_dkh, stride_dvt, stride_dvh,
    stride_lh,
    qk_scale, sm_scale,
    NUM_N_BLOCKS,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    seq = pid // NUM_N_BLOCKS
    nblk = pid % NUM_N_BLOCKS
    start = tl.load(OFFS + seq).to(tl.int64)
    seqlen = (tl.load(OFFS + seq + 1).to(tl.int64) - start).to(tl.int32)
    if nblk * BLOCK_N < seqlen:
        offs_n = nblk * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_m = tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        mask_n = offs_n < seqlen
        mask_d = offs_d < HEAD_DIM
        rows_n = start + offs_n.to(tl.int64)
        mask_nd = mask_n[:, None] & mask_d[None, :]

        k = tl.load(K + h * stride_kh + rows_n[:, None] * stride_kt + offs_d[None, :], mask=mask_nd, other=0.0)
        v = tl.load(V + h * stride_vh + rows_n[:, None] * stride_vt + offs_d[None, :], mask=mask_nd, other=0.0)
        dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        for start_m in range(0, seqlen, BLOCK_M):
            cols = start_m + offs_m
            mask_m = cols < seqlen
            rows_m = start + cols.to(tl.int64)
            qt = tl.load(Q + h * stride_qh + rows_m[None, :] * stride_qt + offs_d[:, None],
                         mask=mask_d[:, None] & mask_m[None, :], other=0.0)
            lse = tl.load(LSE + h * stride_lh + rows_m, mask=mask_m, other=0.0)
            st = tl.dot(k, qt, input_precision=DOT_PRECISION, out_dtype=tl.float32) * qk_scale
            pt = tl.exp2(st - lse[None, :])
            pt = tl.where(mask_n[:, None] & mask_m[None, :], pt, 0.0)
            do = tl.load(DO + h * stride_doh + rows_m[:, None] * stride_dot + offs_d[None, :],
                         mask=mask_m[:, None] & mask_d[None, :], other=0.0)
            dv += tl.dot(pt.to(do.dtype), do, input_precision=DOT_PRECISION, out_dtype=tl.float32)
            delta = tl.load(DELTA + h * stride_lh + rows_m, mask=mask_m, other=0.0)
            dpt = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION, out_dtype=tl.float32)
            dst = pt * (dpt - delta[None, :])
            dk += tl.dot(dst.to(qt.dtype), tl.trans(qt), input_precision=DOT_PRECISION, out_dtype=tl.float32)
        dk = dk * sm_scale
        tl.store(DK + h * stride_dkh + rows_n[:, None] * stride_dkt + offs_d[None, :],
                 dk.to(DK.dtype.element_ty), mask=mask_nd)
        tl.store(DV + h * stride_dvh + rows_n[:, None] * stride_dvt + offs_d[None, :],
                 dv.to(DV.dtype.element_ty), mask=mask_nd)


@triton.jit
def _varlen_bwd_dq_kernel(
    Q, K, V, DO, DQ, LSE, DELTA, OFFS,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh,
    stride_dot, stride_doh, stride_dqt, stride_dqh,
    stride_lh,
    qk_scale, sm_scale,
    NUM_M_BLOCKS,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    seq = pid // NUM_M_BLOCKS
    mblk = pid % NUM_M_BLOCKS
    start = tl.load(OFFS + seq).to(tl.int64)
    seqlen = (tl.load(OFFS + seq + 1).to(tl.int64) - start).to(tl.int32)
    if mblk * BLOCK_M < seqlen:
        offs_m = mblk * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        mask_m = offs_m < seqlen
        mask_d = offs_d < HEAD_DIM
        rows_m = start + offs_m.to(tl.int64)
        mask_md = mask_m[:, None] & mask_d[None, :]

        q = tl.load(Q + h * stride_qh + rows_m[:, None] * stride_qt + offs_d[None, :], mask=mask_md, other=0.0)
        do = tl.load(DO + h * stride_doh + rows_m[:, None] * stride_dot + offs_d[None, :], mask=mask_md, other=0.0)
        lse = tl.load(LSE + h * stride_lh + rows_m, mask=mask_m, other=0.0)
        delta = tl.load(DELTA + h * stride_lh + rows_m, mask=mask_m, other=0.0)
        dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        for start_n in range(0, seqlen, BLOCK_N):
            cols = start_n + offs_n
            mask_n = cols < seqlen
            rows_n = start + cols.to(tl.int64)
            kt = tl.load(K + h * stride_kh + rows_n[None, :] * stride_kt + offs_d[:, None],
                         mask=mask_d[:, None] & mask_n[None, :], other=0.0)
            vt = tl.load(V + h * stride_vh + rows_n[None, :] * stride_vt + offs_d[:, None],
                         mask=mask_d[:, None] & mask_n[None, :], other=0.0)
            s = tl.dot(q, kt, input_precision=DOT_PRECISION, out_dtype=tl.float32) * qk_scale
            p = tl.exp2(s - lse[:, None])
            p = tl.where(mask_m[:, None] & mask_n[None, :], p, 0.0)
            dp = tl.dot(do, vt, input_precision=DOT_PRECISION, out_dtype=tl.float32)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(kt.dtype), tl.trans(kt), input_precision=DOT_PRECISION, out_dtype=tl.float32)
        dq = dq * sm_scale
        tl.store(DQ + h * stride_dqh + rows_m[:, None] * stride_dqt + offs_d[None, :],
                 dq.to(DQ.dtype.element_ty), mask=mask_md)


INTERPRETED: bool = type(_varlen_fwd_kernel).__name__ == "InterpretedFunction"

# Tests may set this to force (BLOCK_M, BLOCK_N) for every kernel, e.g. (16, 16).
_BLOCK_OVERRIDE: tuple[int, int] | None = None


def _dot_precision(dtype: torch.dtype) -> str:
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 and not INTERPRETED:
        return "tf32"  # follow torch's own fp32 matmul setting (off by default)
    return "ieee"


def block_config(kind: str, dtype: torch.dtype, head_dim: int) -> list[dict]:
    """Launch configurations to try, best first (H100-oriented; smaller ones if resources run out).

    kind: "fwd" or "bwd". Under the interpreter small blocks keep CI fast.
    """
    block_d = max(16, triton.next_power_of_2(head_dim))
    if _BLOCK_OVERRIDE is not None:
        bm, bn = _BLOCK_OVERRIDE
        return [dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=4, num_stages=1)]
    if INTERPRETED:
        return [dict(BLOCK_M=32, BLOCK_N=32, num_warps=4, num_stages=1)]
    wide = dtype in (torch.float32, torch.float64)
    if kind == "fwd":
        if wide:
            cfgs = [dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=2)]
        else:
            cfgs = [dict(BLOCK_M=128, BLOCK_N=64, num_warps=8 if block_d >= 128 else 4, num_stages=3),
                    dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2)]
    else:
        if wide:
            cfgs = [dict(BLOCK_M=32, BLOCK_N=32, num_warps=4, num_stages=1)]
        else:
            cfgs = [dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2),
                    dict(BLOCK_M=32, BLOCK_N=64, num_warps=4, num_stages=1)]
    cfgs.append(dict(BLOCK_M=16, BLOCK_N=16, num_warps=2, num_stages=1))
    return cfgs


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


def _flash_cfg(cfg):
    return {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}


def triton_varlen_forward(q, k, v, offsets, scale: float, max_seqlen: int):
    """Returns (out [T, H, D] like q, lse [H, T] float32 in log2 units)."""
    T, H, D = q.shape
    B = offsets.numel() - 1
    out = torch.empty((T, H, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((H, T), dtype=torch.float32, device=q.device)
    if T == 0 or max_seqlen == 0:
        return out, lse
    block_d = max(16, triton.next_power_of_2(D))

    def run(cfg):
        num_m = triton.cdiv(max_seqlen, cfg["BLOCK_M"])
        _varlen_fwd_kernel[(B * num_m, H)](
            q, k, v, out, lse, offsets,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            out.stride(0), out.stride(1), lse.stride(0),
            scale * LOG2E, num_m,
            HEAD_DIM=D, BLOCK_D=block_d, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"],
            DOT_PRECISION=_dot_precision(q.dtype), **_flash_cfg(cfg))

    _launch("fwd", q.dtype, D, run)
    return out, lse


def triton_varlen_backward(grad_out, q, k, v, out, lse, offsets, scale: float, max_seqlen: int):
    T, H, D = q.shape
    B = offsets.numel() - 1
    dq = torch.empty((T, H, D), dtype=q.dtype, device=q.device)
    dk = torch.empty((T, H, D), dtype=k.dtype, device=k.device)
    dv = torch.empty((T, H, D), dtype=v.dtype, device=v.device)
    if T == 0 or max_seqlen == 0:
        return dq, dk, dv
    block_d = max(16, triton.next_power_of_2(D))
    delta = torch.empty_like(lse)
    block_t = 64 if not INTERPRETED else 32
    _varlen_bwd_preprocess[(triton.cdiv(T, block_t), H)](
        out, grad_out, delta,
        out.stride(0), out.stride(1), grad_out.stride(0), grad_out.stride(1), delta.stride(0),
        T, HEAD_DIM=D, BLOCK_D=block_d, BLOCK_T=block_t)
    precision = _dot_precision(q.dtype)

    def run(cfg):
        bm, bn = cfg["BLOCK_M"], cfg["BLOCK_N"]
        num_n = triton.cdiv(max_seqlen, bn)
        _varlen_bwd_dkdv_kernel[(B * num_n, H)](
            q, k, v, grad_out, dk, dv, lse, delta, offsets,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            grad_out.stride(0), grad_out.stride(1), dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1),
            lse.stride(0), scale * LOG2E, scale, num_n,
            HEAD_DIM=D, BLOCK_D=block_d, BLOCK_M=bm, BLOCK_N=bn, DOT_PRECISION=precision,
            **_flash_cfg(cfg))
        num_m = triton.cdiv(max_seqlen, bm)
        _varlen_bwd_dq_kernel[(B * num_m, H)](
            q, k, v, grad_out, dq, lse, delta, offsets,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            grad_out.stride(0), grad_out.stride(1), dq.stride(0), dq.stride(1),
            lse.stride(0), scale * LOG2E, scale, num_m,
            HEAD_DIM=D, BLOCK_D=block_d, BLOCK_M=bm, BLOCK_N=bn, DOT_PRECISION=precision,
            **_flash_cfg(cfg))

    _launch("bwd", q.dtype, D, run)
    return dq, dk, dv
