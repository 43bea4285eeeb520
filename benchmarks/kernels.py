"""asv benchmarks of the attention op alone: padbench's varlen op against the other attention
paths on the same q/k/v (all set-up and timing bodies come from `padbench.kernel_bench`).

* `KernelForward` / `KernelBackward`: ``time_attention`` -- one forward call, or one backward
  pass alone on a retained graph; CUDA is synchronised inside the timed call.
* `KernelError`: ``track_max_abs_err`` -- forward max abs error against the float64 reference.

Parameters: method x distribution x device. Unsupported combinations (FlexAttention backward
on CPU, ``varlen_attn`` off CUDA, no GPU) are skipped in ``setup`` with ``SkipNotImplemented``.

Environment knobs: those of ``benchmarks/common.py`` (distributions, batch size, max length,
threads) plus ``PADBENCH_ASV_NHEAD`` (default 4) and ``PADBENCH_ASV_HEAD_DIM`` (default 64).
"""

from __future__ import annotations

import functools
import os

from .common import (
    BATCH_SIZE,
    DEVICES,
    DISTRIBUTIONS,
    MAX_LEN,
    SEED,
    SkipNotImplemented,
    check_device,
    set_threads,
)

# Fixed here (not read from padbench) so that asv's parameter grid is the same at every commit.
METHODS = ["padbench", "sdpa_padded", "sdpa_loop", "sdpa_njt", "flex", "varlen_attn"]
NHEAD = int(os.environ.get("PADBENCH_ASV_NHEAD", "4"))
HEAD_DIM = int(os.environ.get("PADBENCH_ASV_HEAD_DIM", "64"))


@functools.cache
def _problem(distribution: str, device: str):
    check_device(device)
    set_threads()
    try:
        from padbench.kernel_bench import Problem, sample_lengths
    except ImportError as exc:  # a commit without the kernel benchmark
        raise SkipNotImplemented(f"padbench.kernel_bench not importable at this commit: {exc}")
    lengths = sample_lengths(distribution, BATCH_SIZE, MAX_LEN, SEED)
    return Problem(lengths, NHEAD, HEAD_DIM, device=device, seed=SEED)


@functools.cache
def _timed(method: str, distribution: str, device: str, mode: str):
    """The timed callable, built and warmed up once per process (asv re-runs setup per sample)."""
    from padbench.errors import UnsupportedError
    from padbench.kernel_bench import timed_callable

    try:
        fn = timed_callable(method, _problem(distribution, device), mode)
        fn()  # warm-up: compilation (flex), allocator growth
    except UnsupportedError as exc:
        raise SkipNotImplemented(str(exc))
    return fn


class _Kernel:
    mode = "forward"
    param_names = ("method", "distribution", "device")
    params = (METHODS, DISTRIBUTIONS, DEVICES)
    timeout = 600
    # A call of a few ms takes one of two times from process to process on a small CPU, so
    # asv picks `number` to fill `sample_time` and each sample averages several calls
    # (docs/asv.md, repeatability).
    number = 0
    sample_time = 0.05
    repeat = (5, 20, 10.0)
    warmup_time = 0.0  # setup already ran one warm-up call

    def setup(self, method, distribution, device):
        self.fn = _timed(method, distribution, device, self.mode)

    def time_attention(self, method, distribution, device):
        self.fn()  # synchronises CUDA itself


class KernelForward(_Kernel):
    mode = "forward"


class KernelBackward(_Kernel):
    mode = "backward"


class KernelError:
    param_names = ("method", "distribution", "device")
    params = (METHODS, DISTRIBUTIONS, DEVICES)
    timeout = 600
    unit = "abs error"

    def setup(self, method, distribution, device):
        from padbench.errors import UnsupportedError
        from padbench.kernel_bench import max_abs_error

        try:
            self.err = max_abs_error(method, _problem(distribution, device))
        except UnsupportedError as exc:
            raise SkipNotImplemented(str(exc))

    def track_max_abs_err(self, method, distribution, device):
        return self.err
