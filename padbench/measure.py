"""One timer, one memory probe, one FLOP model.

- `time_fn`: torch.utils.benchmark's adaptive timer, with every thread torch uses (its default
  is one) and a CUDA synchronize inside the timed call; `time_block` times one span of
  back-to-back calls, the unit of interleaved rounds that compare strategies under the same load.
- `peak_bytes_in_process`: CUDA ``max_memory_allocated``; on CPU the peak RSS (VmHWM) after
  resetting it through ``/proc/self/clear_refs`` (tracemalloc cannot see torch's allocations).
  Both report the peak *above* what was resident before the batch ran (weights, input, the
  framework). On CPU it is exact only in a fresh process (allocator reuse hides allocations):
  `padbench.runner.peak_memory` runs it in one.
- `useful_flops`: FLOPs of real tokens only (attention per sequence);
  `matmul_flops`: this machine's dense GEMM rate at the model's FFN shape, measured in the run.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np
import torch
import torch.utils.benchmark as tbench

from .errors import PadbenchError


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], object], device="cpu", *, min_run_time: float = 1.0,
            max_run_time: float = 8.0, slow_runs: int = 3) -> tuple[float, float]:
    """(median seconds per call, relative spread = IQR / median). ``fn`` must synchronize itself.

    A call of a third of ``max_run_time`` or more is slow: it is timed ``slow_runs`` times in all
    (the epoch estimate times each batch once, as an epoch runs it).
    """
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    first = timer.timeit(1)
    if first.median * 3 >= max_run_time:
        # A slow case (seconds per batch): the median of a few single runs, not minutes of samples.
        m = tbench.Measurement.merge([first] + [timer.timeit(1) for _ in range(slow_runs - 1)])[0]
    else:
        m = timer.adaptive_autorange(threshold=0.05, min_run_time=min_run_time, max_run_time=max_run_time)
    return float(m.median), float(m.iqr / m.median) if m.median > 0 else 0.0


def time_block(step: Callable[[], object], batches: int, device="cpu") -> float:
    """Seconds per call over one span of ``batches`` back-to-back calls of ``step``.

    For timing several strategies in interleaved rounds (`padbench.recommend`): each block is
    one span, so machine load during the round hits every strategy alike.
    """
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(batches):
        step()
    synchronize(device)
    return (time.perf_counter() - t0) / batches


# ---------------------------------------------------------------------------------- FLOPs
def useful_flops(lengths, spec, mode: str = "inference") -> float:
    """FLOPs one batch needs on real tokens: dense layers per token, attention per sequence.

    Per layer: QKV and output projections ``2*4*d^2`` and FFN ``2*2*d*ff`` per token; attention
    ``4*L^2*d`` per sequence (QK^T and PV). Training counts backward as twice the forward.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    d, ff = spec.d_model, spec.dim_feedforward
    dense = lengths.sum() * (8.0 * d * d + 4.0 * d * ff)
    attention = 4.0 * d * float((lengths**2).sum())
    forward = spec.num_layers * (dense + attention)
    return float(forward * (3.0 if mode == "training" else 1.0))


def matmul_flops(device: str, dtype: torch.dtype, d_model: int, dim_feedforward: int, tokens: int = 4096) -> float:
    """Measured FLOP/s of a dense ``[tokens, d] @ [d, ff]`` GEMM (the model's FFN) on ``device``.

    Measured again for every case, right after its timing, so that a busy or throttled machine
    moves both sides of ``efficiency`` together.
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(tokens, d_model, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(d_model, dim_feedforward, generator=gen).to(device=device, dtype=dtype)

    def gemm():
        torch.mm(a, b)
        synchronize(device)

    gemm()
    median, _ = time_fn(gemm, device, min_run_time=0.3, max_run_time=1.0)
    return 2.0 * tokens * d_model * dim_feedforward / median


# --------------------------------------------------------------------------------- memory
def _read_hwm_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise PadbenchError("VmHWM not found in /proc/self/status")


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def cpu_peak_supported() -> bool:
    return os.path.exists("/proc/self/clear_refs") and os.access("/proc/self/clear_refs", os.W_OK)


def peak_bytes_in_process(step: Callable[[], object], device) -> int:
    """Peak memory of one ``step()`` above what was resident before it.

    On CPU this is only exact in a fresh process: use `peak_memory` for that.
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)
    _reset_hwm()
    base = _read_hwm_bytes()
    step()
    return int(_read_hwm_bytes() - base)
