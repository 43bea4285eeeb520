"""`check_padding`: run the model on the base batch and each padding variant, compare, report.

`run_checks` is the checker itself, whatever the inputs: `check_padding` gives it float
features and ``model(x, key_padding_mask)``; `padbench.check.hf` gives it token ids and a
Hugging Face model's own call. One checker, so both kinds of model are held to the same rules.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import PadbenchError, describe
from ..judge import tolerances
from ..model import dtype_name, parse_dtype
from .compare import Checker
from .inputs import default_lengths, make_batches
from .modes import check_mode
from .report import CheckReport
from .running import ModelState, Runner, detect_per_token, embeddings_call, model_dtype_device, probe

#: the module modes (``nn.Module.train()`` / ``.eval()``) a check can run in
TORCH_MODES = ("train", "eval")
CHECKS = ("pad_content", "appended_padding", "empty_sequence", "nonfinite")


def check_padding(
    model: nn.Module,
    d_model: int,
    *,
    lengths: Sequence[int] | None = None,
    batch_size: int = 4,
    max_len: int = 10,
    extra_len: int | None = None,
    seed: int = 0,
    modes: Sequence[str] = TORCH_MODES,
    per_token: bool | None = None,
    dtype: torch.dtype | None = torch.float64,
    rtol: float | None = None,
    atol: float = 0.0,
    device: torch.device | str | None = None,
    num_threads: int | None = 1,
) -> CheckReport:
    """Check that padding does not leak into `model` (see `padbench.check`).

    ``model(x [B, L, d_model], key_padding_mask [B, L] bool, True = pad)`` must return
    per-token outputs ``[B, L, ...]`` or per-sequence outputs ``[B, ...]``.

    lengths: the valid lengths of the batch (>= 1 each); default: `batch_size`
        seeded lengths in ``[1, max_len]`` including one of length `max_len`.
    extra_len: columns appended by the `appended_padding` check (default ``max(2, L // 3)``).
    modes: module modes, any of "train", "eval".
    per_token: None detects it from the output shapes at two padded lengths.
    dtype: the check runs on a deep copy of the model converted to this dtype
        (default float64: round-off ~1e-14, leaks obvious); None keeps the model's dtype.
    rtol, atol: pass when ``max|a-b| <= atol + rtol * scale`` (default rtol: the forward
        tolerance of `padbench.judge` for the dtype).
    num_threads: torch intra-op threads while checking (restored afterwards; None leaves
        them alone).  The check computes a few dozen tokens: threading only adds overhead,
        and on a busy 2-core machine it made the check ~10x slower.

    The model (and its mode flags, parameters, buffers, grads) is left as it was; the global
    torch RNG state and thread count too.  Raises PadbenchError on bad input (including a
    forward that fails on the base batch).
    """
    if not isinstance(d_model, int) or d_model < 1:
        raise PadbenchError(f"d_model must be a positive integer, got {d_model!r}")
    return run_checks(
        model, lambda lens, extra, dt, dev: make_batches(lens, extra, d_model, seed, dt, dev),
        lengths=lengths, batch_size=batch_size, max_len=max_len, extra_len=extra_len, seed=seed, modes=modes,
        per_token=per_token, dtype=dtype, rtol=rtol, atol=atol, device=device, num_threads=num_threads)


def run_checks(model: nn.Module, make_inputs, *, call=embeddings_call, lengths=None, batch_size: int = 4,
               max_len: int = 10, extra_len: int | None = None, seed: int = 0, modes: Sequence[str] = TORCH_MODES,
               per_token: bool | None = None, dtype: torch.dtype | None = torch.float64, rtol: float | None = None,
               atol: float = 0.0, device=None, num_threads: int | None = 1, check_lengths=None) -> CheckReport:
    """The checks of `check_padding` on any inputs: ``make_inputs(lengths, extra_len, dtype, device)``
    returns the batches (`padbench.check.inputs`), ``call(model, batch)`` runs one forward.
    ``check_lengths(lengths, extra_len)`` may refuse lengths the model cannot take."""
    t0 = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise PadbenchError(f"expected an nn.Module, got {type(model).__name__}")
    modes = _modes(modes)
    lengths = _lengths(lengths, batch_size, max_len, seed)
    extra_len = _extra_len(extra_len, lengths)
    if check_lengths is not None:
        check_lengths(lengths, extra_len)

    native_dtype, native_device = model_dtype_device(model)
    run_dtype = native_dtype if dtype is None else parse_dtype(dtype)
    try:
        run_device = torch.device(device) if device is not None else native_device
    except (RuntimeError, TypeError) as exc:
        raise PadbenchError(f"bad device {device!r}: {describe(exc)}") from None
    work = _working_copy(model, dtype is not None, run_dtype, run_device, native_dtype, native_device)

    if rtol is None:
        rtol = tolerances(run_dtype)[0]
    report = CheckReport(
        model=type(model).__name__, per_token=bool(per_token), dtype=dtype_name(run_dtype),
        modes=modes, lengths=list(lengths), extra_len=extra_len, seed=seed, rtol=rtol, atol=atol)
    if min(lengths) == max(lengths):
        report.notes.append("no row of the base batch is padded (all lengths equal): pad_content only "
                            "tests the empty sequence's pads")

    state = ModelState(work)
    batches = make_inputs(list(lengths), extra_len, run_dtype, run_device)
    runner = Runner(work, state, per_token, seed, call)
    try:
        with _full_precision(num_threads), \
                torch.random.fork_rng(devices=[run_device] if run_device.type == "cuda" else []):
            work.eval()
            if per_token is None:
                runner.per_token = detect_per_token(runner, batches)
            else:
                runner.per_token = bool(per_token)
                probe(runner, batches["base"])
            report.per_token = runner.per_token
            checker = Checker(report, rtol, atol, runner.per_token)
            if not runner.named_params:
                report.notes.append("the model has no parameters that require grad: gradients not checked")
            for mode in modes:
                work.train(mode == "train")
                check_mode(runner, checker, batches, mode, report)
    finally:
        state.restore()
    report.elapsed_s = time.perf_counter() - t0
    return report


def _modes(modes) -> tuple:
    modes = tuple(modes)
    for m in modes:
        if m not in TORCH_MODES:
            raise PadbenchError(f"unknown mode {m!r}; expected 'train' and/or 'eval'")
    if not modes:
        raise PadbenchError("no modes to check")
    return modes


def _lengths(lengths, batch_size: int, max_len: int, seed: int) -> list:
    if lengths is None:
        return default_lengths(batch_size, max_len, seed)
    lengths = [int(n) for n in lengths]
    if len(lengths) < 1 or min(lengths) < 1:
        raise PadbenchError(f"lengths must be >= 1 each (the empty sequence is added by the check): {lengths}")
    return lengths


def _extra_len(extra_len, lengths: list) -> int:
    L0 = max(lengths)
    if extra_len is None:
        extra_len = max(2, L0 // 3)
        while L0 + extra_len in (len(lengths), len(lengths) + 1):   # keep B != L in every batch
            extra_len += 1
    if extra_len < 1:
        raise PadbenchError(f"extra_len must be >= 1, got {extra_len}")
    return extra_len


def _working_copy(model, convert: bool, run_dtype, run_device, native_dtype, native_device) -> nn.Module:
    """A deep copy moved to the run's device and dtype; the model itself when it cannot be copied
    and needs no conversion (`ModelState` restores it afterwards)."""
    try:
        work = copy.deepcopy(model)
    except Exception as exc:  # noqa: BLE001 - any user module; converting needs the copy
        if run_dtype != native_dtype or run_device != native_device:
            raise PadbenchError(
                f"cannot deep-copy the model to convert it to {run_dtype} ({describe(exc)}); "
                f"use dtype=None (--dtype native) to check it in place") from None
        return model
    try:
        work = work.to(device=run_device)
        if convert:
            work = work.to(dtype=run_dtype)
    except Exception as exc:  # noqa: BLE001 - user modules may refuse a device or dtype
        raise PadbenchError(f"cannot move the model to {run_device} / {run_dtype}: {describe(exc)}") from None
    return work


@contextlib.contextmanager
def _full_precision(num_threads: int | None):
    """Full float32 precision and ``num_threads`` threads while checking; restored afterwards.

    TF32 (cuDNN convolutions use it by default on CUDA) has ~1e-3 relative round-off, which
    would pass for a leak in float32.
    """
    threads = torch.get_num_threads()
    matmul_precision, cudnn_tf32 = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(matmul_precision)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
