"""Time a few launch configurations of the Triton varlen attention kernels on one problem.

`triton_attention._CONFIGS` was chosen from register counts without a GPU. `autotune` measures
instead: for the forward kernel and for the backward pair (dK/dV and dQ share one tile shape) it
times each candidate (BLOCK_M, BLOCK_N, num_warps, num_stages) on a seeded problem, checks its
result against the float64 reference, and returns the fastest accurate one beside the table's
current choice. Nothing here changes what `varlen_attention` launches: the result is for a person
to read and, if it wins, to copy into `_CONFIGS`.

    padbench triton-tune --dtype bfloat16 --nhead 12 --head-dim 64 --out tune.json

On CUDA the timer is `triton.testing.do_bench` (median); on CPU tensors under TRITON_INTERPRET=1
(dry runs only: the interpreter's times say nothing about a GPU) a median of wall-clock calls.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time

import torch

from padbench.errors import PadbenchError, UnsupportedError
from padbench.model import dtype_name

__all__ = ["autotune", "CANDIDATES", "format_result"]

# (BLOCK_M, BLOCK_N, num_warps, num_stages) around the current sm_90 choices for 16-bit inputs.
CANDIDATES = {
    "fwd": [(64, 32, 4, 2), (64, 64, 4, 2), (64, 64, 4, 3), (128, 32, 4, 3), (128, 64, 4, 3),
            (128, 64, 8, 3), (128, 128, 8, 2)],
    "bwd": [(32, 32, 4, 2), (32, 64, 4, 2), (64, 32, 4, 2), (64, 64, 4, 2), (64, 64, 8, 2),
            (64, 128, 8, 2), (128, 64, 8, 2)],
}
# Largest error relative to the reference's largest value that still counts as the same result.
TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float32: 1e-3, torch.float64: 1e-9}


def _cfg(t) -> dict:
    bm, bn, w, s = t
    return dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=s)


@contextlib.contextmanager
def _forced(ta, kind: str, dtype: torch.dtype, head_dim: int, cfg: dict):
    """Make the kernels' launcher use `cfg`: it consults its per-shape cache before its table."""
    key = (kind, dtype, head_dim, ta._BLOCK_OVERRIDE, ta.INTERPRETED)
    saved = dict(ta._CHOSEN)
    ta._CHOSEN[key] = cfg
    try:
        yield
        if set(ta._CHOSEN) != set(saved) | {key}:  # the launcher keyed its cache differently: cfg never ran
            raise RuntimeError("triton_attention's launch cache key changed; update triton_tune._forced")
    finally:
        ta._CHOSEN.clear()
        ta._CHOSEN.update(saved)


def _timer(device: torch.device, reps: int):
    if device.type == "cuda":
        import triton.testing

        return lambda fn: float(triton.testing.do_bench(fn, quantiles=[0.5]))

    def wall_ms(fn):
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    return wall_ms


def _rel_err(got, want) -> float:
    got = got.detach().to(want.device, torch.float64)
    if not bool(torch.isfinite(got).all()):
        return math.inf
    scale = float(want.abs().max()) or 1.0
    return float((got - want).abs().max()) / scale


def autotune(lengths, nhead: int = 12, head_dim: int = 64, *, dtype: torch.dtype = torch.bfloat16,
             device: str = "cuda", candidates: dict | None = None, seed: int = 0, reps: int = 3) -> dict:
    """Time each candidate configuration of the forward and backward kernels on one problem.

    lengths: the batch's sequence lengths; candidates: {"fwd": [(BLOCK_M, BLOCK_N, num_warps,
    num_stages), ...], "bwd": [...]} (default `CANDIDATES`; the table's current choice is always
    added). Returns {"fwd": {"chosen", "current", "rows"}, "bwd": {...}, ...problem facts}; a row is
    one candidate with its median ms, its error relative to the float64 reference and a status
    (ok, inaccurate, out_of_resources, error). `chosen` is the fastest ok row (None if none is).
    """
    from padbench.kernels import reference_varlen_attention
    from padbench.kernels.varlen_attention import _triton_module

    ta = _triton_module()
    device = torch.device(device)
    if device.type == "cpu" and not ta.INTERPRETED:
        raise UnsupportedError("autotune on CPU tensors needs TRITON_INTERPRET=1 (set before importing triton)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError("device cuda requested but CUDA is not available")
    lengths = [int(n) for n in lengths]
    if not lengths or min(lengths) < 0 or max(lengths) == 0:
        raise PadbenchError("lengths must be non-negative with at least one non-empty sequence")
    candidates = CANDIDATES if candidates is None else candidates

    g = torch.Generator().manual_seed(seed)
    T, L = sum(lengths), max(lengths)
    q, k, v, dout = (torch.randn(T, nhead, head_dim, generator=g, dtype=torch.float64) for _ in range(4))
    offsets = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0).tolist()), dtype=torch.int64)
    # float64 reference on the device (fast there; CPU for interpreter-sized problems)
    ref_leaves = [x.to(device).requires_grad_(True) for x in (q, k, v)]
    ref_out = reference_varlen_attention(*ref_leaves, offsets.to(device))
    ref_grads = torch.autograd.grad(ref_out, ref_leaves, dout.to(device))
    ref_out = ref_out.detach()
    q, k, v, dout = (x.to(device, dtype) for x in (q, k, v, dout))
    offsets = offsets.to(device)
    scale = 1.0 / math.sqrt(head_dim)
    tol = TOLERANCE[dtype]
    timer = _timer(device, reps)
    out, lse = ta.triton_varlen_forward(q, k, v, offsets, scale, L)  # the table's choice, for backward's inputs

    def fwd():
        return ta.triton_varlen_forward(q, k, v, offsets, scale, L)[0]

    def bwd():
        return ta.triton_varlen_backward(dout, q, k, v, out, lse, offsets, scale, L)

    result = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
              else "cpu (Triton interpreter)", "interpreted": ta.INTERPRETED, "dtype": dtype_name(dtype),
              "nhead": nhead, "head_dim": head_dim, "batch_size": len(lengths), "num_tokens": T, "longest": L,
              "torch_version": torch.__version__, "triton_version": __import__("triton").__version__}
    for kind, body in (("fwd", fwd), ("bwd", bwd)):
        current = ta.block_config(kind, dtype, head_dim)[0]
        cfgs = [_cfg(c) for c in candidates.get(kind, [])]
        if current not in cfgs:
            cfgs.append(dict(current))
        rows = []
        for cfg in cfgs:
            row = dict(cfg)
            try:
                with _forced(ta, kind, dtype, head_dim, cfg):
                    got = body()
                    err = (_rel_err(got, ref_out) if kind == "fwd"
                           else max(_rel_err(a, b) for a, b in zip(got, ref_grads)))
                    row["ms"] = timer(body)
                row["rel_err"] = err
                row["status"] = "ok" if err <= tol else "inaccurate"
            except UnsupportedError as exc:  # the launcher's OutOfResources: the tile does not fit
                row.update(status="out_of_resources", message=str(exc)[:200])
            except Exception as exc:  # a compile failure is a result too
                row.update(status="error", message=f"{type(exc).__name__}: {exc}"[:200])
            rows.append(row)
        ok = [r for r in rows if r["status"] == "ok"]
        chosen = min(ok, key=lambda r: r["ms"]) if ok else None
        result[kind] = {"current": dict(current), "chosen": chosen, "rows": rows}
    return result


def format_result(res: dict) -> str:
    """One line per candidate and a verdict per kernel kind."""
    lines = [f"{res['device_name']}: {res['dtype']}, {res['nhead']} heads x {res['head_dim']}, "
             f"{res['batch_size']} sequences, {res['num_tokens']} tokens, longest {res['longest']}"]
    for kind in ("fwd", "bwd"):
        part = res[kind]
        cur = part["current"]
        cur_row = next((r for r in part["rows"] if all(r[k] == cur[k] for k in cur)), None)
        for r in part["rows"]:
            ms = f"{r['ms']:.4f} ms" if "ms" in r else "-"
            err = f"{r['rel_err']:.2e}" if "rel_err" in r else "-"
            mark = " (current)" if r is cur_row else ""
            lines.append(f"  {kind} {r['BLOCK_M']:>3}x{r['BLOCK_N']:<3} warps {r['num_warps']} stages "
                         f"{r['num_stages']}: {ms:>12}  rel_err {err}  {r['status']}{mark}")
        best = part["chosen"]
        if best is None:
            lines.append(f"{kind}: no candidate ran within tolerance")
            continue
        cfg = (best["BLOCK_M"], best["BLOCK_N"], best["num_warps"], best["num_stages"])
        vs = ""
        if cur_row is not None and "ms" in cur_row and best["ms"] > 0:
            vs = f", current table entry {cur_row['ms']:.4f} ms ({cur_row['ms'] / best['ms']:.2f}x)"
        lines.append(f"{kind} chosen: BLOCK_M={cfg[0]} BLOCK_N={cfg[1]} num_warps={cfg[2]} num_stages={cfg[3]} "
                     f"({best['ms']:.4f} ms{vs})")
    return "\n".join(lines)


def parse_candidates(text: str) -> list[tuple]:
    """'128x64x4x3,64x64x8x2' -> [(128, 64, 4, 3), (64, 64, 8, 2)]."""
    try:
        out = [tuple(int(x) for x in item.split("x")) for item in text.split(",") if item]
    except ValueError:
        out = []
    if not out or any(len(c) != 4 for c in out):
        raise PadbenchError(f"candidates must look like 128x64x4x3,64x64x8x2 (BLOCK_M x BLOCK_N x warps x stages), "
                            f"got {text!r}")
    return out
