"""The one judge: does a record compute the reference function, and how much faster than `padded` is it.

Every face of padbench (the run table, the report, `recommend`, the asv metrics) asks here, so
that a case is called equivalent, or not, in one place and by one rule. Tolerances are normwise
relative errors against the float64 per-sequence reference, by the dtype the case ran in:
reduced-precision dtypes round every product, so they get tolerances of their own.
"""

from __future__ import annotations

import math

import pandas as pd

from .model import dtype_name

BASELINE = "padded"

# (forward, parameter-gradient) tolerance by dtype.
TOLERANCES = {
    "float64": (1e-9, 1e-8),
    "float32": (1e-4, 1e-3),
    "float16": (5e-3, 2e-2),
    "bfloat16": (2e-2, 5e-2),
}


def tolerances(dtype) -> tuple[float, float]:
    """(forward, gradient) tolerance for ``dtype`` (a torch dtype or its name; None means float32)."""
    name = dtype_name(dtype) if dtype is not None and not _missing(dtype) else "float32"
    return TOLERANCES.get(name, TOLERANCES["float32"])


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def number(v) -> float | None:
    """``v`` as a finite float, or None (missing, NaN, Inf, not a number)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def flag(v) -> bool | None:
    """A recorded yes/no (bool, or text from a CSV/asv file); None when not recorded."""
    if _missing(v):
        return None
    if isinstance(v, str):
        return v.lower() in ("true", "1", "yes")
    return bool(v)


def judge(rec) -> tuple[bool, str]:
    """(equivalent?, why not) for one record (a dict or a pandas row)."""
    if rec.get("status") != "ok":
        return False, f"status {rec.get('status')}"
    fwd_tol, grad_tol = tolerances(rec.get("dtype"))
    fwd = number(rec.get("max_rel_err"))
    if fwd is None:
        return False, "forward error not measured"
    if fwd > fwd_tol:
        return False, f"forward rel. error {fwd:.1e} > {fwd_tol:.0e}"
    grad = number(rec.get("grad_rel_err"))
    if rec.get("mode") == "training" and grad is None:
        return False, "gradient error not measured"
    if grad is not None and grad > grad_tol:
        return False, f"gradient rel. error {grad:.1e} > {grad_tol:.0e}"
    pad_invariant, nan_free = flag(rec.get("pad_invariant")), flag(rec.get("nan_free"))
    if pad_invariant is False:
        return False, "output changes when pad contents change"
    if nan_free is False:
        return False, "NaN (or error) with an empty sequence"
    if pad_invariant is None or nan_free is None:
        return False, "pad checks not recorded"
    return True, ""


def equivalent(rec) -> bool:
    return judge(rec)[0]


def judge_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``equivalent`` and ``why_not`` columns, each row judged by `judge`."""
    df = df.copy()
    judged = [judge(r) for r in df.to_dict("records")]
    df["equivalent"] = pd.Series([j[0] for j in judged], index=df.index, dtype=bool)
    df["why_not"] = pd.Series([j[1] for j in judged], index=df.index, dtype=object)
    return df


def speedup(df: pd.DataFrame, keys, *, baseline: str = BASELINE, label: str = "strategy",
            value: str = "tokens_per_s") -> pd.Series:
    """Each row's ``value`` over the ``baseline`` row's with the same ``keys`` (NaN where there is none).

    ``value`` is a rate (higher is better); pass ``value="time_s"`` for times and the ratio is
    inverted, so a result above 1 always means faster than the baseline.
    """
    keys = [k for k in keys if k in df.columns]
    frame = df[keys].astype(str).assign(_v=pd.to_numeric(df[value], errors="coerce"), _k=0)
    ok = df[label] == baseline
    if "status" in df:
        ok &= df["status"] == "ok"
    base = frame[ok.to_numpy()].drop_duplicates(keys + ["_k"], keep="last").rename(columns={"_v": "_base"})
    base_vals = frame.merge(base, on=keys + ["_k"], how="left")["_base"].to_numpy(dtype=float)
    vals = frame["_v"].to_numpy(dtype=float)
    ratio = base_vals / vals if value == "time_s" else vals / base_vals
    return pd.Series(ratio, index=df.index)
