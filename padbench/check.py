"""`padbench check`: does padding leak into *your* model?

A model that takes a padded batch ``x [B, L, d]`` plus ``key_padding_mask [B, L]``
(bool, True = pad) must compute, at every valid position (or for every sequence),
exactly what it would compute without the padding.  `check_padding` tests that
empirically, in train and in eval mode, on seeded inputs:

``pad_content``
    Refill every pad position with different, large (x100) seeded noise.  Outputs at
    valid positions (per-token models) or per-sequence outputs, and every parameter
    gradient of a loss over valid outputs only, must not change.
``appended_padding``
    Append more padding (``L -> L + extra`` columns of noise).  Same requirement.
``empty_sequence``
    Append one sequence of length 0 (a row that is all padding).  No NaN/Inf may
    appear anywhere in the outputs (pads included: ``out * mask`` style losses turn
    a NaN at a pad into a NaN loss) or in any parameter gradient (with the loss
    excluding that row); the other rows' outputs and the gradients must not change.

Every forward/backward is also checked for NaN/Inf (check ``nonfinite``).

Design decisions (and why)
--------------------------
* **float64 by default.**  The check runs on a deep copy of the model converted to
  float64 (``dtype=torch.float64``).  Round-off then sits around 1e-15..1e-13
  relative, while a leak through pads is O(1e-3..1) relative, so the tolerance
  (``rtol=1e-9``) has six orders of magnitude of room on each side.  In float32
  (``dtype=torch.float32``) a different padded length changes matmul/SDPA blocking
  and summation order, which moves results by ~1e-7..1e-6 relative; ``rtol=1e-4``
  keeps clear of that while still catching any realistic leak.  ``dtype=None``
  runs the model in its own dtype.
* **Scale-aware tolerances.**  An output comparison passes when
  ``max|a - b| <= atol + rtol * max(max|a|, max|b|)`` with the maxima taken over
  the compared (valid) entries: element-wise relative error would raise false
  alarms on entries that are near zero.  A gradient comparison uses, per
  parameter, ``scale = max(max|g_a|, max|g_b|, GRAD_FLOOR * global_scale)``,
  where ``global_scale`` is the largest gradient entry of any parameter: some
  gradients are mathematically zero but numerically not (the key-projection bias
  of softmax attention: a constant added to every score cancels), and their
  round-off is set by the size of the terms that cancel, not by their own size.
* **Same weights, same state, same randomness for every forward.**  Parameters and
  buffers are snapshotted once and copied back before every forward (BatchNorm's
  running statistics and ``num_batches_tracked`` change in train mode), gradients
  are cleared, and ``torch.manual_seed(seed)`` is called right before each forward
  (the global RNG state is restored when the check ends).  Non-tensor Python state
  a model keeps on itself cannot be restored.
* **Dropout.**  With the same seed and the same input *shape*, dropout draws the
  same masks, so ``pad_content`` stays an exact comparison in train mode.  When the
  shape changes (``appended_padding``, ``empty_sequence``) the masks land on
  different elements, so the outputs differ for reasons unrelated to padding.  The
  check detects this empirically (same input, a different seed, different output)
  and reports those comparisons as *not applicable* in that mode instead of
  raising a false alarm; eval mode still covers them.  A model whose forward is
  not reproducible even under a fixed seed is reported as not applicable in that
  mode.
* **Full precision.**  While checking, TF32 is switched off (float32 matmul precision
  "highest", ``cudnn.allow_tf32 = False``) and torch runs on one intra-op thread
  (a few dozen tokens gain nothing from threads); both are restored afterwards.
* **Eval is checked on two paths**: under ``torch.no_grad()`` (the inference path:
  ``nn.TransformerEncoder`` takes its nested-tensor fast path there and returns
  exact zeros at pads) and with autograd enabled (for gradients).  Violations name
  the path.
* **Per-token or per-sequence** is detected by running two padded lengths: a
  per-token output has ``shape[:2] == (B, L)`` for both, a per-sequence output has
  the same ``[B, ...]`` shape for both (so ``B == L`` cannot fool it).  The
  default lengths also keep ``B != L``.  ``per_token=`` overrides.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import importlib.util
import math
import os
import sys
import time
from typing import Any, Sequence

import torch
from torch import nn

from padbench.errors import PadbenchError

__all__ = [
    "CheckReport",
    "Comparison",
    "Violation",
    "check_padding",
    "load_model",
    "DEFAULT_RTOL",
    "GRAD_FLOOR",
]

#: relative tolerance per dtype (see the module docstring)
DEFAULT_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 5e-3}
#: gradient scale floor, as a fraction of the largest gradient entry of any parameter
GRAD_FLOOR = 1e-2
#: the pad noise of the `pad_content` variant is this many times larger than the valid tokens
PAD_NOISE_SCALE = 100.0
MODES = ("train", "eval")
CHECKS = ("pad_content", "appended_padding", "empty_sequence", "nonfinite")


# --------------------------------------------------------------------------- report types
@dataclasses.dataclass
class Violation:
    """One precise finding."""

    check: str                      # pad_content | appended_padding | empty_sequence | nonfinite
    mode: str                       # train | eval
    path: str                       # autograd | no_grad
    kind: str                       # output | gradient | nonfinite_output | nonfinite_gradient | error
    message: str                    # one line, human readable
    max_abs_diff: float | None = None
    rel_diff: float | None = None   # max_abs_diff / scale
    location: dict | None = None    # {"batch": b, "position": t, "index": [...]} for outputs
    parameters: list = dataclasses.field(default_factory=list)  # [{"name", "max_abs_diff", "rel_diff"}]

    def to_dict(self) -> dict:
        return _jsonable(dataclasses.asdict(self))


@dataclasses.dataclass
class Comparison:
    """Every comparison that was made, passing or not, with its margin."""

    check: str
    mode: str
    path: str
    kind: str          # output | gradient
    max_abs_diff: float
    rel_diff: float    # worst diff / scale (for gradients: worst over parameters)
    rtol: float
    passed: bool

    def to_dict(self) -> dict:
        return _jsonable(dataclasses.asdict(self))


@dataclasses.dataclass
class CheckReport:
    model: str
    per_token: bool
    dtype: str
    modes: tuple
    lengths: list
    extra_len: int
    seed: int
    rtol: float
    atol: float
    violations: list = dataclasses.field(default_factory=list)
    comparisons: list = dataclasses.field(default_factory=list)
    not_applicable: list = dataclasses.field(default_factory=list)   # [{"check", "mode", "reason"}]
    notes: list = dataclasses.field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def checks_failed(self) -> set:
        return {(v.check, v.mode) for v in self.violations}

    def to_dict(self) -> dict:
        return _jsonable({
            "ok": self.ok,
            "model": self.model,
            "per_token": self.per_token,
            "dtype": self.dtype,
            "modes": list(self.modes),
            "lengths": list(self.lengths),
            "extra_len": self.extra_len,
            "seed": self.seed,
            "rtol": self.rtol,
            "atol": self.atol,
            "violations": [v.to_dict() for v in self.violations],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "not_applicable": list(self.not_applicable),
            "notes": list(self.notes),
            "elapsed_s": self.elapsed_s,
        })

    def summary(self) -> str:
        out = "per-token" if self.per_token else "per-sequence"
        lines = [
            f"padbench check: {self.model}  ({out} outputs, {self.dtype}, modes {'/'.join(self.modes)}, "
            f"lengths {list(self.lengths)}, +{self.extra_len} appended, seed {self.seed}, "
            f"rtol {self.rtol:g}, atol {self.atol:g})",
        ]
        if self.ok:
            lines.append("OK: no padding leak found.")
        else:
            lines.append(f"LEAK: {len(self.violations)} violation(s):")
            for v in self.violations:
                lines.append(f"  - [{v.check}, {v.mode}, {v.path}] {v.message}")
        for na in self.not_applicable:
            lines.append(f"  n/a [{na['check']}, {na['mode']}]: {na['reason']}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.comparisons:
            worst: dict = {}
            for c in self.comparisons:
                key = (c.check, c.mode)
                worst[key] = max(worst.get(key, 0.0), c.rel_diff)
            margins = ", ".join(f"{k[0]}/{k[1]} {v:.1e}" for k, v in worst.items())
            lines.append(f"  largest relative differences: {margins}")
        lines.append(f"  ({len(self.comparisons)} comparisons in {self.elapsed_s:.2f} s)")
        return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)   # JSON has no inf/nan
    return obj


# --------------------------------------------------------------------------- inputs
@dataclasses.dataclass
class _Batch:
    x: torch.Tensor
    mask: torch.Tensor          # True = pad
    lengths: list


def _default_lengths(batch_size: int, max_len: int, seed: int) -> list:
    if batch_size < 2:
        raise PadbenchError(f"batch_size must be >= 2 (one full and one padded sequence), got {batch_size}")
    if max_len < 2:
        raise PadbenchError(f"max_len must be >= 2 so that a sequence can be padded, got {max_len}")
    if batch_size == max_len:
        # keep B != L so that shapes stay unambiguous even to a human reading them
        max_len += 1
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (batch_size,), generator=g).tolist()
    perm = torch.randperm(batch_size, generator=g).tolist()
    lengths[perm[0]] = max_len                          # one full-length row
    lengths[perm[1]] = max(1, min(lengths[perm[1]], max_len // 2))  # one clearly padded row
    return lengths


def _make_batches(lengths: list, extra: int, d_model: int, seed: int, dtype, device) -> dict:
    B, L = len(lengths), max(lengths)
    g = torch.Generator().manual_seed(seed)
    valid = torch.randn(B, L, d_model, generator=g, dtype=torch.float64)
    noise = torch.randn(B + 1, L + extra, d_model, generator=g, dtype=torch.float64)
    big = torch.randn(B, L, d_model, generator=g, dtype=torch.float64) * PAD_NOISE_SCALE
    pos = torch.arange(L + extra)
    lens = torch.tensor(lengths)
    mask2 = pos[None, :] >= lens[:, None]              # [B, L+extra]
    mask0 = mask2[:, :L]

    def fill(values, pads, mask):
        return torch.where(mask[..., None], pads, values)

    base = fill(valid, noise[:B, :L], mask0)
    padded = fill(valid, big, mask0)
    longer = torch.cat([base, noise[:B, L:]], dim=1)
    empty_x = torch.cat([base, noise[B:, :L]], dim=0)
    empty_mask = torch.cat([mask0, torch.ones(1, L, dtype=torch.bool)], dim=0)

    def mk(x, m, ls):
        return _Batch(x.to(dtype=dtype, device=device), m.to(device), ls)

    return {
        "base": mk(base, mask0, lengths),
        "pad_content": mk(padded, mask0, lengths),
        "appended_padding": mk(longer, mask2, lengths),
        "empty_sequence": mk(empty_x, empty_mask, lengths + [0]),
    }


# --------------------------------------------------------------------------- model state
class _State:
    """Snapshot of parameters, buffers, grads and training flags; restores them."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.tensors = [t for _, t in model.named_parameters()] + [t for _, t in model.named_buffers()]
        self.values = [t.detach().clone() for t in self.tensors]
        self.params = [p for _, p in model.named_parameters()]
        self.grads = [None if p.grad is None else p.grad.detach().clone() for p in self.params]
        self.training = [(m, m.training) for m in model.modules()]

    def reset(self) -> None:
        with torch.no_grad():
            for t, v in zip(self.tensors, self.values):
                t.copy_(v)
        for p in self.params:
            p.grad = None

    def restore(self) -> None:
        self.reset()
        for p, g in zip(self.params, self.grads):
            p.grad = g
        for m, flag in self.training:
            m.training = flag


def _model_dtype_device(model: nn.Module):
    dtype, device = None, None
    for t in list(model.parameters()) + list(model.buffers()):
        if device is None:
            device = t.device
        if dtype is None and t.is_floating_point():
            dtype = t.dtype
    return dtype or torch.float32, device or torch.device("cpu")


# --------------------------------------------------------------------------- running
@dataclasses.dataclass
class _Run:
    out: torch.Tensor
    grads: dict | None      # name -> grad (None: no gradient checks possible)


def _describe(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}".rstrip(": ")


class _Runner:
    def __init__(self, model, state: _State, per_token, seed: int, d_model: int):
        self.model = model
        self.state = state
        self.per_token = per_token
        self.seed = seed
        self.d_model = d_model
        self.named_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.weights: dict = {}
        self.seq_shape: tuple | None = None

    def forward(self, batch: _Batch, *, grad: bool, seed: int | None = None) -> _Run:
        """One forward (+ backward of a loss over valid outputs); raises on failure."""
        self.state.reset()
        torch.manual_seed(self.seed if seed is None else seed)
        with (contextlib.nullcontext() if grad else torch.no_grad()):
            # fresh copies: a model that writes into its inputs must not change the next run's
            out = self.model(batch.x.clone(), batch.mask.clone())
        if not isinstance(out, torch.Tensor):
            raise PadbenchError(
                f"the model's forward returned {type(out).__name__}, expected a tensor "
                f"[B, L, ...] or [B, ...]; wrap the model to return one tensor")
        if not out.is_floating_point():
            raise PadbenchError(f"the model's forward returned a {out.dtype} tensor, expected floating point")
        if out.ndim < 1 or out.shape[0] != batch.x.shape[0]:
            raise PadbenchError(
                f"the model's output has shape {list(out.shape)}: its first dimension must be the batch "
                f"size {batch.x.shape[0]}")
        L = batch.x.shape[1]
        if self.per_token and (out.ndim < 2 or out.shape[1] != L):
            raise PadbenchError(
                f"per-token outputs expected ([B, L, ...] with L = {L}), got shape {list(out.shape)}")
        if self.per_token is False:
            if self.seq_shape is None:
                self.seq_shape = tuple(out.shape[1:])
            elif tuple(out.shape[1:]) != self.seq_shape:
                raise PadbenchError(
                    f"per-sequence outputs expected (the same [B, ...] shape for every padded length), "
                    f"got {list(out.shape)} for x {list(batch.x.shape)} after {[out.shape[0], *self.seq_shape]}")
        grads = None
        if grad and out.requires_grad and self.named_params and self.per_token is not None:
            loss = self.loss(out, batch)
            loss.backward()
            grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
                     for n, p in self.named_params}
        return _Run(out.detach(), grads)

    def loss(self, out: torch.Tensor, batch: _Batch) -> torch.Tensor:
        """sum(valid outputs * fixed seeded weights), over the base batch's rows and positions only."""
        B = len(batch.lengths) - (batch.lengths[-1] == 0)   # the base batch's rows
        L0 = max(batch.lengths)
        if self.per_token:
            sel = out[:B, :L0]
            valid = ~batch.mask[:B, :L0]
            key = tuple(sel.shape)
        else:
            sel = out[:B]
            valid = None
            key = tuple(sel.shape)
        w = self.weights.get(key)
        if w is None:
            g = torch.Generator().manual_seed(self.seed + 7919)
            w = torch.randn(key, generator=g, dtype=torch.float64).to(out.dtype).to(out.device)
            self.weights[key] = w
        if valid is not None:
            return (sel[valid] * w[valid]).sum()   # indexing, not multiplying: NaN at pads stays out
        return (sel * w).sum()


def _nonfinite(t: torch.Tensor) -> torch.Tensor:
    return ~torch.isfinite(t)


def _loc(idx: Sequence[int], per_token: bool) -> dict:
    idx = [int(i) for i in idx]
    if per_token:
        return {"batch": idx[0], "position": idx[1], "index": idx[2:]}
    return {"batch": idx[0], "index": idx[1:]}


def _fmt_loc(loc: dict) -> str:
    s = f"batch {loc['batch']}"
    if "position" in loc:
        s += f", position {loc['position']}"
    if loc.get("index"):
        s += f", index {loc['index']}"
    return s


class _Checker:
    def __init__(self, report: CheckReport, rtol: float, atol: float, per_token: bool):
        self.report = report
        self.rtol, self.atol = rtol, atol
        self.per_token = per_token

    def close(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        """Same within tolerance (NaN == NaN): tells randomness from nondeterministic round-off (CUDA)."""
        if a.shape != b.shape:
            return False
        a64, b64 = a.double(), b.double()
        same = (a64 == b64) | (torch.isnan(a64) & torch.isnan(b64))
        if bool(same.all()):
            return True
        diff = torch.where(same, torch.zeros_like(a64), (a64 - b64).abs()).nan_to_num(nan=math.inf)
        finite = torch.isfinite(a64) & torch.isfinite(b64)
        scale = torch.where(finite, a64.abs().maximum(b64.abs()), torch.zeros_like(a64)).max().item()
        return diff.max().item() <= self.atol + self.rtol * scale

    # ---- outputs
    def compare_outputs(self, check, mode, path, ref: torch.Tensor, other: torch.Tensor, batch: _Batch) -> None:
        B, L0 = len(batch.lengths), max(batch.lengths)
        if self.per_token:
            a, b = ref[:B, :L0], other[:B, :L0]
            valid = ~batch.mask[:B, :L0]
            vshape = valid.shape + (1,) * (a.ndim - 2)
            valid_full = valid.reshape(vshape).expand_as(a)
        else:
            a, b = ref[:B], other[:B]
            valid_full = torch.ones_like(a, dtype=torch.bool)
        a64, b64 = a.double(), b.double()
        same_nonfinite = (a64 == b64) | (torch.isnan(a64) & torch.isnan(b64))
        diff = torch.where(same_nonfinite, torch.zeros_like(a64), (a64 - b64).abs())
        diff = torch.nan_to_num(diff, nan=math.inf)
        diff = torch.where(valid_full, diff, torch.zeros_like(diff))
        finite_vals = lambda t: torch.where(valid_full & torch.isfinite(t), t.abs(), torch.zeros_like(t))
        scale = max(finite_vals(a64).max().item(), finite_vals(b64).max().item()) if a64.numel() else 0.0
        max_diff = diff.max().item() if diff.numel() else 0.0
        tol = self.atol + self.rtol * scale
        rel = max_diff / scale if scale > 0 else (0.0 if max_diff == 0 else math.inf)
        passed = max_diff <= tol
        self.report.comparisons.append(Comparison(check, mode, path, "output", max_diff, rel, self.rtol, passed))
        if passed:
            return
        flat = int(torch.argmax(diff.reshape(-1)).item())
        loc = _loc(torch.unravel_index(torch.tensor(flat), diff.shape), self.per_token)
        n_bad = int((diff > tol).sum().item())
        what = "outputs at valid positions" if self.per_token else "per-sequence outputs"
        cause = {
            "pad_content": "when the pad contents were refilled with other noise",
            "appended_padding": "when more padding was appended",
            "empty_sequence": "when a fully padded sequence was added to the batch",
        }[check]
        rows = sorted({int(i) for i in torch.nonzero(diff > tol)[:, 0].tolist()})
        msg = (f"{what} changed {cause}: max abs diff {max_diff:.3g} (relative {rel:.3g}, tolerance "
               f"{tol:.3g}) at {_fmt_loc(loc)}; {n_bad} entries in rows {rows}")
        self.report.violations.append(
            Violation(check, mode, path, "output", msg, max_diff, rel, loc))

    # ---- gradients
    def compare_grads(self, check, mode, path, ref: dict, other: dict) -> None:
        diffs = {}
        gscale = 0.0
        for name, g in ref.items():
            o = other[name]
            g64, o64 = g.double(), o.double()
            if not (torch.isfinite(g64).all() and torch.isfinite(o64).all()):
                continue   # reported by the nonfinite check
            d = (g64 - o64).abs().max().item() if g.numel() else 0.0
            s = max(g64.abs().max().item(), o64.abs().max().item()) if g.numel() else 0.0
            diffs[name] = (d, s)
            gscale = max(gscale, s)
        bad = []
        worst_rel, worst_abs = 0.0, 0.0
        for name, (d, s) in diffs.items():
            scale = max(s, GRAD_FLOOR * gscale)
            rel = d / scale if scale > 0 else (0.0 if d == 0 else math.inf)
            worst_rel, worst_abs = max(worst_rel, rel), max(worst_abs, d)
            if d > self.atol + self.rtol * scale:
                bad.append({"name": name, "max_abs_diff": d, "rel_diff": rel})
        passed = not bad
        self.report.comparisons.append(
            Comparison(check, mode, path, "gradient", worst_abs, worst_rel, self.rtol, passed))
        if passed:
            return
        bad.sort(key=lambda p: -p["rel_diff"])
        shown = ", ".join(f"{p['name']} (abs {p['max_abs_diff']:.3g}, rel {p['rel_diff']:.3g})" for p in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        cause = {
            "pad_content": "when the pad contents were refilled with other noise",
            "appended_padding": "when more padding was appended",
            "empty_sequence": "when a fully padded sequence was added to the batch",
        }[check]
        msg = (f"gradients of a loss over valid outputs only changed {cause} in {len(bad)} of "
               f"{len(ref)} parameters: {shown}{more}")
        self.report.violations.append(Violation(
            check, mode, path, "gradient", msg, bad[0]["max_abs_diff"], bad[0]["rel_diff"], None, bad))

    # ---- NaN / Inf
    def nonfinite(self, check, mode, path, run: _Run, batch: _Batch) -> None:
        out = run.out
        bad = _nonfinite(out)
        if bad.any():
            B = out.shape[0]
            if self.per_token:
                L = batch.mask.shape[1]
                mshape = (B, L) + (1,) * (out.ndim - 2)
                pad = batch.mask.reshape(mshape).expand_as(out)
                n_valid = int((bad & ~pad).sum().item())
                n_pad = int((bad & pad).sum().item())
                first = torch.nonzero(bad & ~pad)[0] if n_valid else torch.nonzero(bad)[0]
                loc = _loc(first.tolist(), True)
                where = f"{n_valid} at valid positions, {n_pad} at pad positions"
            else:
                first = torch.nonzero(bad)[0]
                loc = _loc(first.tolist(), False)
                where = f"{int(bad.sum().item())} entries"
            empty_rows = [i for i, n in enumerate(batch.lengths) if n == 0]
            rows = sorted({int(i) for i in torch.nonzero(bad)[:, 0].tolist()})
            row_note = ""
            if empty_rows:
                row_note = f" (row {empty_rows[0]} is fully padded)"
            kinds = []
            if torch.isnan(out).any():
                kinds.append("NaN")
            if torch.isinf(out).any():
                kinds.append("Inf")
            msg = (f"{'/'.join(kinds)} in outputs: {where}, in rows {rows}{row_note}; first at {_fmt_loc(loc)}")
            if self.per_token and n_valid == 0:
                msg += ("; only at pads, but a loss or pooling that multiplies by a 0/1 mask instead of "
                        "selecting valid positions turns it into NaN")
            self.report.violations.append(Violation(check, mode, path, "nonfinite_output", msg, location=loc))
        if run.grads:
            names = [n for n, g in run.grads.items() if not torch.isfinite(g).all()]
            if names:
                shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                msg = (f"NaN/Inf in the gradients of {len(names)} of {len(run.grads)} parameters "
                       f"(loss over valid outputs only): {shown}")
                self.report.violations.append(Violation(
                    check, mode, path, "nonfinite_gradient", msg,
                    parameters=[{"name": n, "max_abs_diff": None, "rel_diff": None} for n in names]))


def _probe(runner: _Runner, batch: _Batch) -> torch.Tensor:
    try:
        return runner.forward(batch, grad=False).out
    except PadbenchError:
        raise
    except Exception as exc:
        B, L, d = batch.x.shape
        raise PadbenchError(
            f"model(x [{B}, {L}, {d}], key_padding_mask [{B}, {L}]) failed in eval mode: {_describe(exc)}") from None


def _detect_per_token(runner: _Runner, batches: dict) -> bool:
    a = _probe(runner, batches["base"])
    b = _probe(runner, batches["appended_padding"])
    B = batches["base"].x.shape[0]
    L0, L2 = batches["base"].x.shape[1], batches["appended_padding"].x.shape[1]
    if a.ndim >= 2 and a.shape[1] == L0 and b.ndim >= 2 and b.shape[1] == L2 and a.shape[2:] == b.shape[2:]:
        return True
    if a.shape == b.shape:
        return False
    raise PadbenchError(
        f"cannot tell per-token from per-sequence output: shape {list(a.shape)} for x [{B}, {L0}, d] "
        f"and {list(b.shape)} for x [{B}, {L2}, d]; expected [B, L, ...] or [B, ...] (or pass per_token=)")


# --------------------------------------------------------------------------- public API
def check_padding(
    model: nn.Module,
    d_model: int,
    *,
    lengths: Sequence[int] | None = None,
    batch_size: int = 4,
    max_len: int = 10,
    extra_len: int | None = None,
    seed: int = 0,
    modes: Sequence[str] = MODES,
    per_token: bool | None = None,
    dtype: torch.dtype | None = torch.float64,
    rtol: float | None = None,
    atol: float = 0.0,
    device: torch.device | str | None = None,
    num_threads: int | None = 1,
) -> CheckReport:
    """Check that padding does not leak into `model` (see the module docstring).

    ``model(x [B, L, d_model], key_padding_mask [B, L] bool, True = pad)`` must return
    per-token outputs ``[B, L, ...]`` or per-sequence outputs ``[B, ...]``.

    lengths: the valid lengths of the batch (>= 1 each); default: `batch_size`
        seeded lengths in ``[1, max_len]`` including one of length `max_len`.
    extra_len: columns appended by the `appended_padding` check (default ``max(2, L // 3)``).
    modes: any of "train", "eval".
    per_token: None detects it from the output shapes at two padded lengths.
    dtype: the check runs on a deep copy of the model converted to this dtype
        (default float64: round-off ~1e-14, leaks obvious); None keeps the model's dtype.
    rtol, atol: pass when ``max|a-b| <= atol + rtol * scale`` (default rtol by dtype:
        float64 1e-9, float32 1e-4, float16 5e-3, bfloat16 2e-2).

    num_threads: torch intra-op threads while checking (restored afterwards; None leaves
        them alone).  The check computes a few dozen tokens: threading only adds overhead,
        and on a busy 2-core machine it made the check ~10x slower.

    The model (and its mode flags, parameters, buffers, grads) is left as it was;
    the global torch RNG state and thread count too.  Raises PadbenchError on bad input (including a
    forward that fails on the base batch).
    """
    t0 = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise PadbenchError(f"expected an nn.Module, got {type(model).__name__}")
    if not isinstance(d_model, int) or d_model < 1:
        raise PadbenchError(f"d_model must be a positive integer, got {d_model!r}")
    modes = tuple(modes)
    for m in modes:
        if m not in MODES:
            raise PadbenchError(f"unknown mode {m!r}; expected 'train' and/or 'eval'")
    if not modes:
        raise PadbenchError("no modes to check")
    if lengths is None:
        lengths = _default_lengths(batch_size, max_len, seed)
    else:
        lengths = [int(n) for n in lengths]
        if len(lengths) < 1 or min(lengths) < 1:
            raise PadbenchError(f"lengths must be >= 1 each (the empty sequence is added by the check): {lengths}")
    L0 = max(lengths)
    if extra_len is None:
        extra_len = max(2, L0 // 3)
        while L0 + extra_len in (len(lengths), len(lengths) + 1):
            extra_len += 1
    if extra_len < 1:
        raise PadbenchError(f"extra_len must be >= 1, got {extra_len}")

    native_dtype, native_device = _model_dtype_device(model)
    run_dtype = native_dtype if dtype is None else dtype
    try:
        run_device = torch.device(device) if device is not None else native_device
    except (RuntimeError, TypeError) as exc:
        raise PadbenchError(f"bad device {device!r}: {_describe(exc)}") from None
    try:
        work = copy.deepcopy(model)
    except Exception as exc:
        if run_dtype != native_dtype or run_device != native_device:
            raise PadbenchError(
                f"cannot deep-copy the model to convert it to {run_dtype} ({_describe(exc)}); "
                f"use dtype=None (--dtype native) to check it in place") from None
        work = model   # checked in place; _State restores everything afterwards
    if work is not model:
        try:
            work = work.to(device=run_device)
            if dtype is not None:
                work = work.to(dtype=run_dtype)
        except Exception as exc:
            raise PadbenchError(f"cannot move the model to {run_device} / {run_dtype}: {_describe(exc)}") from None

    if rtol is None:
        rtol = DEFAULT_RTOL.get(run_dtype, 1e-4)
    report = CheckReport(
        model=type(model).__name__, per_token=bool(per_token), dtype=str(run_dtype).replace("torch.", ""),
        modes=modes, lengths=list(lengths), extra_len=extra_len, seed=seed, rtol=rtol, atol=atol)
    if min(lengths) == L0:
        report.notes.append("no row of the base batch is padded (all lengths equal): pad_content only "
                            "tests the empty sequence's pads")

    state = _State(work)
    batches = _make_batches(list(lengths), extra_len, d_model, seed, run_dtype, run_device)
    runner = _Runner(work, state, per_token, seed, d_model)
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    # full float32 precision while checking: TF32 (cuDNN convolutions use it by default on CUDA)
    # has ~1e-3 relative round-off, which would pass for a leak in float32 mode
    matmul_precision, cudnn_tf32 = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.random.fork_rng(devices=[run_device] if run_device.type == "cuda" else []):
            work.eval()
            if per_token is None:
                runner.per_token = _detect_per_token(runner, batches)
            else:
                runner.per_token = bool(per_token)
                _probe(runner, batches["base"])
            report.per_token = runner.per_token
            checker = _Checker(report, rtol, atol, runner.per_token)
            if not runner.named_params:
                report.notes.append("the model has no parameters that require grad: gradients not checked")
            for mode in modes:
                work.train(mode == "train")
                _check_mode(runner, checker, batches, mode, report)
    finally:
        state.restore()
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(matmul_precision)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
    report.elapsed_s = time.perf_counter() - t0
    return report


def _check_mode(runner: _Runner, checker: _Checker, batches: dict, mode: str, report: CheckReport) -> None:
    paths = ["autograd"] + (["no_grad"] if mode == "eval" else [])
    for path in paths:
        grad = path == "autograd"

        def fwd(name, seed=None, _grad=grad):
            try:
                return runner.forward(batches[name], grad=_grad, seed=seed)
            except PadbenchError:
                raise
            except Exception as exc:
                b = batches[name]
                if name == "empty_sequence":
                    return exc
                raise PadbenchError(
                    f"{mode}-mode {'forward/backward' if _grad else 'forward'} failed on x "
                    f"{list(b.x.shape)} ({name.replace('_', ' ')} batch): {_describe(exc)}") from None

        base = fwd("base")
        checker.nonfinite("nonfinite", mode, path, base, batches["base"])
        if grad and base.grads is None and runner.named_params:
            report.notes.append(f"{mode} mode: the output does not require grad: gradients not checked")
        # reproducibility and stochasticity (dropout) of this mode
        again = fwd("base")
        if not checker.close(base.out, again.out):
            report.not_applicable.append({
                "check": "all", "mode": mode,
                "reason": f"the {path} forward is not reproducible under a fixed torch.manual_seed: "
                          "outputs differ between two identical calls"})
            continue
        other_seed = fwd("base", seed=runner.seed + 1)
        stochastic = not checker.close(base.out, other_seed.out)

        # 1. pad content
        run = fwd("pad_content")
        checker.nonfinite("pad_content", mode, path, run, batches["pad_content"])
        checker.compare_outputs("pad_content", mode, path, base.out, run.out, batches["base"])
        if base.grads is not None and run.grads is not None:
            checker.compare_grads("pad_content", mode, path, base.grads, run.grads)

        # 2. appended padding
        run = fwd("appended_padding")
        checker.nonfinite("appended_padding", mode, path, run, batches["appended_padding"])
        if stochastic:
            report.not_applicable.append({
                "check": "appended_padding", "mode": mode,
                "reason": f"the {path} forward is random (dropout?): with a different input shape the "
                          "random masks differ, so outputs cannot be compared; checked in eval mode"})
        else:
            checker.compare_outputs("appended_padding", mode, path, base.out, run.out, batches["base"])
            if base.grads is not None and run.grads is not None:
                checker.compare_grads("appended_padding", mode, path, base.grads, run.grads)

        # 4. an empty (fully padded) sequence
        run = fwd("empty_sequence")
        if isinstance(run, Exception):
            report.violations.append(Violation(
                "empty_sequence", mode, path, "error",
                f"the model fails on a batch containing a fully padded sequence (length 0): {_describe(run)}"))
            continue
        checker.nonfinite("empty_sequence", mode, path, run, batches["empty_sequence"])
        if stochastic:
            report.not_applicable.append({
                "check": "empty_sequence", "mode": mode,
                "reason": f"the {path} forward is random (dropout?): other rows are not compared when a "
                          "row is added (NaN/Inf still checked)"})
        else:
            checker.compare_outputs("empty_sequence", mode, path, base.out, run.out, batches["base"])
            if base.grads is not None and run.grads is not None:
                checker.compare_grads("empty_sequence", mode, path, base.grads, run.grads)




# --------------------------------------------------------------------------- CLI
def load_model(target: str) -> nn.Module:
    """``MODULE:CALLABLE`` -> ``CALLABLE()``; MODULE is a dotted module (cwd is importable) or a .py path."""
    mod_name, sep, attr = target.rpartition(":")
    if not sep or not mod_name or not attr:
        raise PadbenchError(f"expected MODULE:CALLABLE (e.g. mypkg.models:build or path/to/file.py:build), got {target!r}")
    try:
        if mod_name.endswith(".py") or os.sep in mod_name or (os.altsep and os.altsep in mod_name):
            path = os.path.abspath(mod_name)
            if not os.path.isfile(path):
                raise PadbenchError(f"no such file: {mod_name}")
            name = "_padbench_check_" + os.path.splitext(os.path.basename(path))[0]
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise PadbenchError(f"cannot import {mod_name}: not a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            cwd = os.getcwd()
            if cwd not in sys.path:
                sys.path.insert(0, cwd)
            module = importlib.import_module(mod_name)
    except PadbenchError:
        raise
    except Exception as exc:
        raise PadbenchError(f"cannot import {mod_name}: {_describe(exc)}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PadbenchError(f"{mod_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise PadbenchError(f"{target} is not callable (it is a {type(obj).__name__})")
    try:
        model = obj()
    except Exception as exc:
        raise PadbenchError(f"calling {target}() failed: {_describe(exc)}") from None
    if not isinstance(model, nn.Module):
        raise PadbenchError(f"{target}() returned {type(model).__name__}, expected a torch.nn.Module")
    return model
