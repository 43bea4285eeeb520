"""Attention-op benchmark: padbench's varlen op against the other ways torch offers to attend
within variable-length sequences, on the same q/k/v.

Methods (each on its natural layout, built once outside the timed call; layout conversions are
not timed here -- the end-to-end strategies in `padbench run` pay for them):

- ``padbench``      `padbench.kernels.varlen_attention` on packed ``[T, H, D]`` + offsets.
- ``flash_per_length``  PyTorch's CPU flash kernel once per distinct length on views of the
                    packed tensors: padbench's CPU fallback, the design its C++ kernel replaced.
- ``sdpa_padded``   `F.scaled_dot_product_attention` on the padded batch ``[B, H, L, D]`` with a
                    bool key mask ``[B, 1, 1, L]`` (True = attend: the opposite of
                    ``key_padding_mask``); pads hold seeded noise.
- ``sdpa_loop``     one SDPA call per sequence on ``[1, H, L_i, D]`` views, outputs concatenated.
- ``sdpa_njt``      SDPA on jagged nested tensors (``nested_tensor_from_jagged``), ``[B, H, j, D]``.
- ``flex``          compiled FlexAttention over the packed ``[1, H, T, D]`` with a document
                    block mask (CPU: forward only).
- ``varlen_attn``   `torch.nn.attention.varlen.varlen_attn` (CUDA only).

Modes: ``forward`` times the forward call; ``backward`` times the backward pass alone
(``torch.autograd.grad`` with ``retain_graph=True`` on a graph built once). FLOPs count real
tokens only: forward ``4 * sum(L_i^2) * H * D`` (QK^T and PV), backward ``2.5x`` forward (the
FlashAttention convention: 5 matmuls against 2, recomputation of P included).

Each record also carries the forward max abs error against a float64 per-sequence reference.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .batch import VarlenBatch
from .errors import PadbenchError, UnsupportedError, failure
from .judge import speedup
from .lengths import DEFAULT_DISTS
from .model import dtype_name, parse_dtype

METHODS = ("padbench", "flash_per_length", "sdpa_padded", "sdpa_loop", "sdpa_njt", "flex", "varlen_attn")
# The passes of the attention op timed alone (not the inference/training modes of a whole encoder).
PASSES = ("forward", "backward")
BACKWARD_FLOP_FACTOR = 2.5
SCHEMA_VERSION = 1
KIND = "padbench.kernel"


# --------------------------------------------------------------------------- inputs

def sample_lengths(dist: str, batch_size: int, max_len: int | None, seed: int) -> np.ndarray:
    """Lengths from `padbench.lengths` (seeded, the same on every machine); max_len None: the
    distribution's default (`padbench.lengths.DEFAULT_MAX_LEN`)."""
    from .lengths import sample_lengths as _sample

    return np.asarray(_sample(dist, batch_size, max_len, seed), dtype=np.int64)


def attention_flops(lengths, nhead: int, head_dim: int, mode: str = "forward") -> float:
    """Attention FLOPs on real tokens: 4*sum(L^2)*H*D forward, 2.5x that for the backward pass."""
    fwd = 4.0 * float(np.sum(np.asarray(lengths, dtype=np.float64) ** 2)) * nhead * head_dim
    return fwd * (BACKWARD_FLOP_FACTOR if mode == "backward" else 1.0)


class Problem:
    """One seeded attention problem: packed q/k/v, offsets and the float64 reference output."""

    def __init__(self, lengths, nhead: int, head_dim: int, *, dtype=torch.float32, device="cpu", seed: int = 0):
        self.lengths = [int(x) for x in lengths]
        if not self.lengths or min(self.lengths) < 0:
            raise PadbenchError("lengths must be a non-empty list of non-negative integers")
        self.nhead, self.head_dim, self.dtype, self.device = nhead, head_dim, dtype, torch.device(device)
        self.T = sum(self.lengths)
        self.B = len(self.lengths)
        self.L = max(self.lengths)
        g = torch.Generator().manual_seed(seed)
        self.q, self.k, self.v, self.grad = (
            torch.randn(self.T, nhead, head_dim, generator=g).to(device=self.device, dtype=dtype) for _ in range(4))
        # The padded/packed layouts come from VarlenBatch, over [T, H*D] rows, like every strategy's.
        self.layout = VarlenBatch._make(self.q.reshape(self.T, -1), np.asarray(self.lengths), pad_seed=seed + 1)
        self.offsets = self.layout.offsets
        self.offsets_list = [int(o) for o in self.offsets.tolist()]

    @property
    def padding_ratio(self) -> float:
        return self.layout.padding_ratio

    @functools.cached_property
    def reference(self) -> torch.Tensor:
        from .kernels import reference_varlen_attention

        return reference_varlen_attention(self.q.cpu(), self.k.cpu(), self.v.cpu(), self.offsets.cpu())

    def leaves(self):
        return tuple(x.detach().clone().requires_grad_(True) for x in (self.q, self.k, self.v))

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        """[T, H, D] -> [B, H, L, D] with seeded noise in the pads."""
        rows = replace(self.layout, values=x.detach().reshape(self.T, -1), _cache=self.layout._cache)
        out, _ = rows.to_padded()
        return out.view(self.B, self.L, self.nhead, self.head_dim).transpose(1, 2).contiguous()

    def unpad(self, y: torch.Tensor) -> torch.Tensor:
        """[B, H, L, D] -> packed [T, H, D] (valid rows only)."""
        return self.layout.unpad(y.transpose(1, 2))

    def key_mask(self) -> torch.Tensor:
        """[B, 1, 1, L] bool, True = attend (SDPA's convention)."""
        return ~self.layout.key_padding_mask()[:, None, None, :]


# --------------------------------------------------------------------------- methods
# Each builder returns (run_forward, make_backward): run_forward() -> packed output [T, H, D];
# make_backward() -> a zero-argument callable running one backward pass on a retained graph.

def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _autograd_backward(forward_with_leaves, p: Problem):
    def make():
        leaves = p.leaves()
        out = forward_with_leaves(*leaves)
        grad = p.grad

        def step():
            return torch.autograd.grad(out, leaves, grad, retain_graph=True)
        return step
    return make


def _build_padbench(p: Problem, backend=None):
    from .kernels import varlen_attention

    def fwd(q, k, v):
        return varlen_attention(q, k, v, p.offsets, backend=backend, max_seqlen=p.L, check=False)
    return (lambda: fwd(p.q, p.k, p.v)), _autograd_backward(fwd, p)


def _build_flash_per_length(p: Problem):
    from .kernels.varlen_attention import flash_per_length

    if p.device.type != "cpu":
        raise UnsupportedError("flash_per_length is padbench's CPU fallback (CPU tensors only)")

    def fwd(q, k, v):
        return flash_per_length(q, k, v, p.offsets)
    return (lambda: fwd(p.q, p.k, p.v)), _autograd_backward(fwd, p)


def _build_sdpa_padded(p: Problem):
    mask = p.key_mask()
    qp, kp, vp = (p.padded(x) for x in (p.q, p.k, p.v))

    def run():
        return F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask)

    def make_backward():
        leaves = tuple(x.detach().clone().requires_grad_(True) for x in (qp, kp, vp))
        out = F.scaled_dot_product_attention(*leaves, attn_mask=mask)
        # upstream gradient zero at pad query rows: the loss only sees valid positions
        gp = p.padded(p.grad) * mask.transpose(-1, -2)
        return lambda: torch.autograd.grad(out, leaves, gp, retain_graph=True)

    return (lambda: p.unpad(run())), make_backward, run


def _build_sdpa_loop(p: Problem):
    offs = p.offsets_list

    def fwd(q, k, v):
        outs = []
        for i in range(p.B):
            s, e = offs[i], offs[i + 1]
            if s == e:
                continue
            o = F.scaled_dot_product_attention(*(x[s:e].unsqueeze(0).transpose(1, 2) for x in (q, k, v)))
            outs.append(o.transpose(1, 2).reshape(e - s, p.nhead, p.head_dim))
        return torch.cat(outs) if outs else q.new_zeros(q.shape)
    return (lambda: fwd(p.q, p.k, p.v)), _autograd_backward(fwd, p)


def _build_sdpa_njt(p: Problem):
    offsets = p.offsets

    def to_njt(x):
        nt = torch.nested.nested_tensor_from_jagged(x.flatten(-2), offsets)  # [B, j, H*D]
        return nt.unflatten(-1, (p.nhead, p.head_dim)).transpose(1, 2)  # [B, H, j, D]

    def fwd_nt(qn, kn, vn):
        return F.scaled_dot_product_attention(qn, kn, vn)

    def values(out_nt):
        return out_nt.transpose(1, 2).values()  # [T, H, D]

    qn, kn, vn = (to_njt(x) for x in (p.q, p.k, p.v))

    def make_backward():
        leaves = p.leaves()
        out = values(fwd_nt(*(to_njt(x) for x in leaves)))
        return lambda: torch.autograd.grad(out, leaves, p.grad, retain_graph=True)

    return (lambda: values(fwd_nt(qn, kn, vn))), make_backward


@functools.lru_cache(maxsize=1)
def _flex_compiled():
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    return torch.compile(flex_attention, dynamic=False), create_block_mask


def _build_flex(p: Problem, mode: str):
    try:
        flex_attention, create_block_mask = _flex_compiled()
    except ImportError as exc:
        raise UnsupportedError(f"this torch ({torch.__version__}) has no FlexAttention: {exc}") from None
    if p.device.type == "cpu" and mode == "backward":
        raise UnsupportedError("FlexAttention does not support backward on CPU")
    doc = torch.repeat_interleave(torch.arange(p.B, device=p.device),
                                  torch.tensor(p.lengths, device=p.device), output_size=p.T)

    def same_doc(b, h, q_idx, kv_idx):
        return doc[q_idx] == doc[kv_idx]

    block_mask = create_block_mask(same_doc, None, None, p.T, p.T, device=p.device)

    def fwd(q, k, v):
        q4, k4, v4 = (x.transpose(0, 1)[None] for x in (q, k, v))  # [1, H, T, D]
        return flex_attention(q4, k4, v4, block_mask=block_mask)[0].transpose(0, 1)
    return (lambda: fwd(p.q, p.k, p.v)), _autograd_backward(fwd, p)


def _build_varlen_attn(p: Problem):
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        raise UnsupportedError(f"this torch ({torch.__version__}) has no torch.nn.attention.varlen") from None
    if p.device.type != "cuda":
        raise UnsupportedError("torch.nn.attention.varlen.varlen_attn is CUDA-only "
                               "(_flash_attention_forward has no CPU kernel)")
    if p.dtype not in (torch.float16, torch.bfloat16):
        raise UnsupportedError(f"varlen_attn runs the FlashAttention kernel: float16/bfloat16 only, got {p.dtype}")
    cu = p.offsets.to(torch.int32)

    def fwd(q, k, v):
        return varlen_attn(q, k, v, cu, cu, p.L, p.L)
    return (lambda: fwd(p.q, p.k, p.v)), _autograd_backward(fwd, p)


def build(method: str, p: Problem, mode: str, backend: str | None = None):
    """(run_forward, make_backward) for `method` on problem `p`; raises UnsupportedError."""
    if method == "padbench":
        return _build_padbench(p, backend)
    if method == "flash_per_length":
        return _build_flash_per_length(p)
    if method == "sdpa_padded":
        fwd_packed, make_backward, _ = _build_sdpa_padded(p)
        return fwd_packed, make_backward
    if method == "sdpa_loop":
        return _build_sdpa_loop(p)
    if method == "sdpa_njt":
        return _build_sdpa_njt(p)
    if method == "flex":
        return _build_flex(p, mode)
    if method == "varlen_attn":
        return _build_varlen_attn(p)
    raise PadbenchError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def timed_callable(method: str, p: Problem, mode: str, backend: str | None = None) -> Callable[[], object]:
    """The exact zero-argument callable that is timed (CUDA synchronised inside)."""
    if method == "sdpa_padded" and mode == "forward":
        _, _, run = _build_sdpa_padded(p)  # time the kernel on its own layout, not the unpad
        body = run
    else:
        fwd, make_backward = build(method, p, mode, backend)
        body = fwd if mode == "forward" else make_backward()
    device = p.device

    def call():
        out = body()
        _sync(device)
        return out
    return call


# --------------------------------------------------------------------------- runner

def _time(fn, device, min_run_time: float) -> tuple[float, float]:
    from .measure import time_fn

    return time_fn(fn, device, min_run_time=min_run_time, max_run_time=max(4 * min_run_time, 0.05))


def max_abs_error(method: str, p: Problem, backend: str | None = None) -> float:
    """Forward max abs error of `method` against the float64 per-sequence reference."""
    fwd, _ = build(method, p, "forward", backend)
    with torch.no_grad():
        out = fwd()
    _sync(p.device)
    return float((out.detach().cpu().double() - p.reference).abs().max()) if p.T else 0.0


def _check_device(device: str):
    if device not in ("cpu", "cuda"):
        raise PadbenchError(f"device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError("device cuda requested but CUDA is not available")


def _modes(mode: str) -> tuple[str, ...]:
    if mode == "both":
        return PASSES
    if mode not in PASSES:
        raise PadbenchError(f"mode must be forward, backward or both, got {mode!r}")
    return (mode,)


def run_kernel_bench(device: str = "cpu", dtype: torch.dtype | str = torch.float32, batch_size: int = 32,
                     max_len: int | None = None, nhead: int = 4, head_dim: int = 64,
                     distributions=DEFAULT_DISTS, mode: str = "both", seed: int = 0, methods=METHODS,
                     backend: str | None = None, min_run_time: float = 0.5, progress=None) -> list[dict]:
    """Time every method x distribution x mode; one record per combination (unsupported ones too).

    Record: method, distribution, mode, device, dtype, batch_size, max_len, nhead, head_dim,
    num_tokens, longest, padding_ratio, time_s (median), time_spread (IQR/median), flops
    (attention FLOPs on real tokens for that mode), flops_per_s, max_abs_err (forward, vs
    float64), status (ok | unsupported | error), message, seed, flop_convention.
    """
    _check_device(device)
    if isinstance(dtype, str):
        dtype = parse_dtype(dtype)
    if isinstance(distributions, str):
        distributions = [d for d in distributions.split(",") if d]
    if isinstance(methods, str):
        methods = METHODS if methods == "all" else [m for m in methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            raise PadbenchError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    for name, value in (("batch_size", batch_size), ("nhead", nhead), ("head_dim", head_dim)):
        if not isinstance(value, int) or value < 1:
            raise PadbenchError(f"{name} must be a positive integer, got {value!r}")
    modes = _modes(mode)
    records = []
    for dist in distributions:
        lengths = sample_lengths(dist, batch_size, max_len, seed)
        p = Problem(lengths, nhead, head_dim, dtype=dtype, device=device, seed=seed)
        for method in methods:
            err = None
            for md in modes:
                rec = dict(method=method, distribution=dist, mode=md, device=device, dtype=dtype_name(dtype),
                           batch_size=batch_size, max_len=max_len, nhead=nhead, head_dim=head_dim,
                           num_tokens=p.T, longest=p.L, padding_ratio=p.padding_ratio,
                           flops=attention_flops(p.lengths, nhead, head_dim, md),
                           flop_convention="fwd 4*sum(L^2)*H*D; bwd pass alone 2.5x fwd",
                           time_s=None, time_spread=None, flops_per_s=None, max_abs_err=None,
                           status="ok", message="", seed=seed)
                try:
                    if err is None:
                        err = max_abs_error(method, p, backend)
                    rec["max_abs_err"] = err
                    fn = timed_callable(method, p, md, backend)
                    fn()  # warm-up (compilation, allocator)
                    t, spread = _time(fn, device, min_run_time)
                    rec.update(time_s=t, time_spread=spread, flops_per_s=rec["flops"] / t if t > 0 else None)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # recorded, never fatal: other methods still run
                    rec.update(failure(exc))
                records.append(rec)
                if progress is not None:
                    progress(rec)
    return records


# --------------------------------------------------------------------------- table / CLI

def to_frame(records):
    """pandas table: one row per record, time in ms, GFLOP/s, speedup over sdpa_padded."""
    import pandas as pd

    df = pd.DataFrame(records)
    if df.empty:
        return df
    df["time_ms"] = df["time_s"].astype(float) * 1e3
    df["gflops"] = df["flops_per_s"].astype(float) / 1e9
    df["speedup_vs_padded"] = speedup(df, ["distribution", "mode"], baseline="sdpa_padded", label="method",
                                      value="time_s")
    return df


def format_table(records) -> str:
    df = to_frame(records)
    if df.empty:
        return "(no records)"
    cols = ["distribution", "mode", "method", "padding_ratio", "num_tokens", "time_ms", "gflops",
            "speedup_vs_padded", "max_abs_err", "status", "message"]
    show = df[cols].copy()
    show["message"] = show["message"].str.slice(0, 60)
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 20,
                                             "display.max_colwidth", 60):
        return show.to_string(index=False, float_format=lambda x: f"{x:.3g}")


__all__ = ["run_kernel_bench", "attention_flops", "Problem", "timed_callable", "build", "max_abs_error",
           "METHODS", "PASSES", "to_frame", "format_table"]
