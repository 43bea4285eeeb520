"""Comparing two runs of the model, and finding NaN/Inf in one; findings go into the report.

Tolerances are scale-aware: an output comparison passes when
``max|a - b| <= atol + rtol * max(max|a|, max|b|)`` over the compared (valid) entries, since
element-wise relative error raises false alarms on entries near zero. A gradient comparison
uses, per parameter, ``scale = max(max|g_a|, max|g_b|, GRAD_FLOOR * global_scale)``: some
gradients are mathematically zero but numerically not (the key-projection bias of softmax
attention: a constant added to every score cancels), and their round-off is set by the size of
the terms that cancel, not by their own size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .inputs import Batch
from .report import HAZARD, CheckReport, Comparison, Violation
from .running import Run

#: gradient scale floor, as a fraction of the largest gradient entry of any parameter
GRAD_FLOOR = 1e-2

_CAUSE = {
    "pad_content": "when the pad contents were refilled with other noise",
    "appended_padding": "when more padding was appended",
    "empty_sequence": "when a fully padded sequence was added to the batch",
}
_MASK_MULTIPLY = ("a loss or pooling that multiplies by a 0/1 mask instead of selecting valid positions "
                  "turns it into NaN")


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


class Checker:
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

    def compare_outputs(self, check, mode, path, ref: torch.Tensor, other: torch.Tensor, batch: Batch,
                        cause: str = "") -> None:
        """Outputs of the base batch's real tokens (or sequences) in two runs; ``cause``: what changed."""
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

        def finite_abs(t):
            return torch.where(valid_full & torch.isfinite(t), t.abs(), torch.zeros_like(t))

        scale = max(finite_abs(a64).max().item(), finite_abs(b64).max().item()) if a64.numel() else 0.0
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
        rows = sorted({int(i) for i in torch.nonzero(diff > tol)[:, 0].tolist()})
        msg = (f"{what} changed {cause or _CAUSE[check]}: max abs diff {max_diff:.3g} (relative {rel:.3g}, tolerance "
               f"{tol:.3g}) at {_fmt_loc(loc)}; {n_bad} entries in rows {rows}")
        self.report.violations.append(Violation(check, mode, path, "output", msg, max_diff, rel, loc))

    def compare_grads(self, check, mode, path, ref: dict, other: dict, cause: str = "") -> None:
        """Parameter gradients of a loss over real tokens in two runs (NaN/Inf ones: see `nonfinite`)."""
        diffs = {}
        gscale = 0.0
        for name, g in ref.items():
            o = other[name]
            g64, o64 = g.double(), o.double()
            if not (torch.isfinite(g64).all() and torch.isfinite(o64).all()):
                continue
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
        msg = (f"gradients of a loss over valid outputs only changed {cause or _CAUSE[check]} in {len(bad)} of "
               f"{len(ref)} parameters: {shown}{more}")
        self.report.violations.append(Violation(
            check, mode, path, "gradient", msg, bad[0]["max_abs_diff"], bad[0]["rel_diff"], None, bad))

    def nonfinite(self, check, mode, path, run: Run, batch: Batch) -> None:
        """NaN/Inf in one run: a leak where it reaches real outputs or gradients, else a hazard."""
        out = run.out
        bad = ~torch.isfinite(out)
        if bad.any():
            self.report.violations.append(self._nonfinite_output(check, mode, path, out, bad, batch))
        if run.grads:
            names = [n for n, g in run.grads.items() if not torch.isfinite(g).all()]
            if names:
                shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                msg = (f"NaN/Inf in the gradients of {len(names)} of {len(run.grads)} parameters "
                       f"(loss over valid outputs only): {shown}")
                self.report.violations.append(Violation(
                    check, mode, path, "nonfinite_gradient", msg,
                    parameters=[{"name": n, "max_abs_diff": None, "rel_diff": None} for n in names]))

    def _nonfinite_output(self, check, mode, path, out, bad, batch: Batch) -> Violation:
        empty_rows = [i for i, n in enumerate(batch.lengths) if n == 0]
        rows = sorted({int(i) for i in torch.nonzero(bad)[:, 0].tolist()})
        if self.per_token:
            L = batch.mask.shape[1]
            pad = batch.mask.reshape((out.shape[0], L) + (1,) * (out.ndim - 2)).expand_as(out)
            n_valid = int((bad & ~pad).sum().item())
            n_pad = int((bad & pad).sum().item())
            first = torch.nonzero(bad & ~pad)[0] if n_valid else torch.nonzero(bad)[0]
            where = f"{n_valid} at valid positions, {n_pad} at pad positions"
            real = n_valid > 0
        else:
            first = torch.nonzero(bad)[0]
            where = f"{int(bad.sum().item())} entries"
            real = any(r not in empty_rows for r in rows)
        loc = _loc(first.tolist(), self.per_token)
        row_note = f" (row {empty_rows[0]} is fully padded)" if empty_rows else ""
        kinds = "/".join(k for k, f in (("NaN", torch.isnan), ("Inf", torch.isinf)) if f(out).any())
        msg = f"{kinds} in outputs: {where}, in rows {rows}{row_note}; first at {_fmt_loc(loc)}"
        if real:
            return Violation(check, mode, path, "nonfinite_output", msg, location=loc)
        if self.per_token:
            msg += f"; only at pads, no real token is affected, but {_MASK_MULTIPLY}"
        else:
            msg += f"; only in the outputs of fully padded rows, no real sequence is affected, but {_MASK_MULTIPLY}"
        return Violation(check, mode, path, "nonfinite_output", msg, location=loc, severity=HAZARD)

