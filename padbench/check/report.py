"""What `check_padding` found: findings, every comparison made, and the verdict.

The verdict sorts findings by what they mean for a user's real tokens:

``clean``
    no finding.
``leak``
    outputs or gradients of real tokens depend on padding, or NaN/Inf reaches real-token
    outputs or any parameter gradient (of a loss over real tokens only).
``hazard``
    every finding is confined to padding: NaN/Inf only in the outputs of fully padded rows
    (or at pad positions), or the model fails on a batch holding an empty sequence. Real tokens
    are unaffected, but a loss or pooling that multiplies by a 0/1 mask instead of selecting
    valid positions turns such a NaN into a NaN loss.
"""

from __future__ import annotations

import dataclasses

from ..results import json_safe

CLEAN, LEAK, HAZARD = "clean", "leak", "hazard"
VERDICTS = (CLEAN, LEAK, HAZARD)


@dataclasses.dataclass
class Violation:
    """One precise finding."""

    check: str                      # pad_content | appended_padding | empty_sequence | nonfinite
    mode: str                       # module mode: train | eval
    path: str                       # autograd | no_grad
    kind: str                       # output | gradient | nonfinite_output | nonfinite_gradient | error
    message: str                    # one line, human readable
    max_abs_diff: float | None = None
    rel_diff: float | None = None   # max_abs_diff / scale
    location: dict | None = None    # {"batch": b, "position": t, "index": [...]} for outputs
    parameters: list = dataclasses.field(default_factory=list)  # [{"name", "max_abs_diff", "rel_diff"}]
    severity: str = LEAK            # leak | hazard

    def to_dict(self) -> dict:
        return json_safe(dataclasses.asdict(self))


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
        return json_safe(dataclasses.asdict(self))


@dataclasses.dataclass
class CheckReport:
    model: str
    per_token: bool
    dtype: str
    modes: tuple                    # module modes checked: train and/or eval
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

    @property
    def verdict(self) -> str:
        """``clean``, ``leak`` or ``hazard`` (see the module docstring)."""
        if not self.violations:
            return CLEAN
        return LEAK if any(v.severity == LEAK for v in self.violations) else HAZARD

    def checks_failed(self) -> set:
        return {(v.check, v.mode) for v in self.violations}

    def to_dict(self) -> dict:
        return json_safe({
            "ok": self.ok,
            "verdict": self.verdict,
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

    def verdict_line(self) -> str:
        verdict = self.verdict
        if verdict == CLEAN:
            return "OK: no padding leak found."
        leaks = sum(v.severity == LEAK for v in self.violations)
        hazards = len(self.violations) - leaks
        if verdict == LEAK:
            also = f" (and {hazards} hazard(s) confined to padding)" if hazards else ""
            return (f"LEAK: {leaks} finding(s) where outputs or gradients of real tokens depend on padding "
                    f"or turn NaN/Inf{also}:")
        return (f"HAZARD, not a leak: {'; '.join(self._hazard_parts())}; outputs and gradients of real "
                f"tokens do not depend on padding ({hazards} finding(s)):")

    def _hazard_parts(self) -> list:
        parts = []
        nonfinite = [v for v in self.violations if v.kind == "nonfinite_output"]
        if nonfinite:
            # the empty sequence is the last row, so a first NaN/Inf there means that row only
            if all(v.location and v.location["batch"] == len(self.lengths) for v in nonfinite):
                parts.append("NaN/Inf only in the outputs of fully padded rows")
            else:
                parts.append("NaN/Inf only in outputs at pad positions")
        if any(v.kind == "error" for v in self.violations):
            parts.append("the model fails on a batch holding a fully padded row")
        return parts

    def summary(self) -> str:
        out = "per-token" if self.per_token else "per-sequence"
        lines = [
            self.verdict_line(),
            (f"padbench check: {self.model}  ({out} outputs, {self.dtype}, modes {'/'.join(self.modes)}, "
             f"lengths {list(self.lengths)}, +{self.extra_len} appended, seed {self.seed}, "
             f"rtol {self.rtol:g}, atol {self.atol:g})"),
        ]
        for v in self.violations:
            lines.append(f"  - [{v.check}, {v.mode}, {v.path}] {v.severity}: {v.message}")
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
