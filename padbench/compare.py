"""Two sets of results, case by case: the ratio of their times and whether it is more than noise.

A and B are anything `padbench.loader.load` reads: padbench run files, one asv result file per
commit, or whole machine folders (two machines). Cases match on the strategy and
`padbench.table.GROUP` (same batch, model and dtype), never on the file they came from.

The verdict follows ``asv compare``: B is ``better`` or ``worse`` only when its time differs
from A's by more than ``factor`` *and* the difference is more than the recorded noise. Noise is
asv's 99% interval of the median where both sides have one (asv's own test: intervals that
overlap are not different); otherwise the interquartile range of the samples (``time_spread``,
IQR / median in padbench records and derived from asv's quartiles), whose overlap is stricter
still, since the median varies far less than one sample. A side timed once carries no spread,
and the factor alone decides (as asv does for a single sample).
"""

from __future__ import annotations

import math

import pandas as pd

from . import judge, loader
from .errors import PadbenchError
from .table import GROUP

KEY = ["strategy", *[k for k in GROUP if k != "source"]]  # `source` names the file: it differs by design
SHOWN = ["device", "mode", "distribution", "strategy"]  # always shown; other keys only where they vary
SAME = "same within noise"
REGRESSED = ("worse", "failed")
DEFAULT_FACTOR = 1.1


def key_text(v) -> str:
    """One key value as text, so that 256, 256.0 and "256" (one file had a missing value) match."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _side(df: pd.DataFrame) -> pd.DataFrame:
    """One row per case: the latest (a machine folder holds many commits, a folder many runs)."""
    df = df.copy()
    for k in KEY:
        df[k] = df[k].map(key_text) if k in df else ""
    df["_t"] = pd.to_datetime(df["run_time"], utc=True, errors="coerce").fillna(pd.Timestamp(0, tz="UTC"))
    df = df.sort_values("_t", kind="stable").drop_duplicates(KEY, keep="last")
    return df.set_index(KEY)


def _num(row, col) -> float | None:
    return judge.number(row.get(col)) if row is not None else None


def _band(row, t: float) -> tuple[float, float] | None:
    """The interval a time is known to within, or None when the run recorded no spread."""
    lo, hi = _num(row, "time_ci_low"), _num(row, "time_ci_high")
    if lo is not None and hi is not None:
        return lo, hi
    s = _num(row, "time_spread")
    if s is None or s <= 0:
        return None
    return t * (1 - s / 2), t * (1 + s / 2)


def verdict(t_a: float, t_b: float, band_a, band_b, factor: float) -> str:
    """``better`` / ``worse`` (B against A), or `SAME` when within ``factor`` or within the noise."""
    if not (t_b > t_a * factor or t_b < t_a / factor):
        return SAME
    if band_a is not None and band_b is not None and band_a[1] >= band_b[0] and band_a[0] <= band_b[1]:
        return SAME  # beyond the factor, but the two intervals overlap: not a measured difference
    return "worse" if t_b > t_a else "better"


def _pct(row, t) -> float | None:
    band = _band(row, t) if t is not None else None
    return None if band is None else 100 * (band[1] - band[0]) / 2 / t


def compare(a, b, *, factor: float = DEFAULT_FACTOR) -> pd.DataFrame:
    """Per case: A's and B's time, their noise (±%), ``ratio`` = B / A (> 1: B slower) and ``verdict``.

    ``a`` and ``b`` are a results file or folder each (see the module docstring). Verdicts:
    better, worse, same within noise, failed (ok in A, not in B: its status and message in
    ``note``), fixed, only in A, only in B. Cases that ran in neither (both unsupported) are left
    out. ``attrs["a"]`` / ``attrs["b"]`` name the runs each side holds.
    """
    if factor < 1:
        raise PadbenchError(f"--factor must be at least 1, got {factor}")
    fa, fb = loader.load([a]), loader.load([b])
    sa, sb = _side(fa), _side(fb)
    rows = []
    for key in sa.index.union(sb.index):
        ra = sa.loc[key].to_dict() if key in sa.index else None
        rb = sb.loc[key].to_dict() if key in sb.index else None
        ok_a = ra is not None and ra.get("status") == "ok" and _num(ra, "time_s") is not None
        ok_b = rb is not None and rb.get("status") == "ok" and _num(rb, "time_s") is not None
        t_a, t_b = _num(ra, "time_s") if ok_a else None, _num(rb, "time_s") if ok_b else None
        if ok_a and ok_b:
            v = verdict(t_a, t_b, _band(ra, t_a), _band(rb, t_b), factor)
        elif ok_a:
            v = "only in A" if rb is None else "failed"
        elif ok_b:
            v = "only in B" if ra is None else "fixed"
        else:
            continue
        note = ""
        if v == "failed":
            note = f"{rb.get('status')}: {rb.get('message') or ''}".rstrip(": ")
        elif v == SAME and t_a and t_b and not 1 / factor <= t_b / t_a <= factor:
            note = "beyond the factor, within the noise"
        rows.append({**dict(zip(KEY, key)), "a_s": t_a, "a_noise_pct": _pct(ra, t_a), "b_s": t_b,
                     "b_noise_pct": _pct(rb, t_b), "ratio": t_b / t_a if t_a and t_b else None,
                     "verdict": v, "note": note})
    out = pd.DataFrame(rows, columns=[*KEY, "a_s", "a_noise_pct", "b_s", "b_noise_pct", "ratio", "verdict", "note"])
    out = out.sort_values(["device", "mode", "distribution", "strategy"], kind="stable").reset_index(drop=True)
    out.attrs.update(a=_label(fa), b=_label(fb), factor=factor)
    return out


def _label(df: pd.DataFrame) -> str:
    """What a side holds, in a few words: its runs (``padbench run X.pbjson``, ``asv M @ commit``)."""
    runs = df["run"].dropna().unique().tolist()
    return ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")


def regressed(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["verdict"].isin(REGRESSED)].reset_index(drop=True)


def shown_columns(df: pd.DataFrame) -> list[str]:
    """Key columns worth printing: the usual four, plus any other that differs between cases."""
    extra = [k for k in KEY if k not in SHOWN and df[k].nunique() > 1]
    return SHOWN + extra


def display(df: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """The table a person reads: ``keys`` (default `shown_columns`), times in ms, noise in %, B/A."""
    out = df[keys or shown_columns(df)].copy()

    def ms(col):  # three significant digits, never in exponent notation
        return df[col].map(lambda v: "" if v is None or pd.isna(v) else
                           f"{1e3 * v:,.0f}" if v >= 0.1 else f"{1e3 * v:.3g}")

    def pct(col):
        return df[col].map(lambda v: "" if v is None or pd.isna(v) else f"±{v:.1f}%")

    out["A ms"], out["A noise"] = ms("a_s"), pct("a_noise_pct")
    out["B ms"], out["B noise"] = ms("b_s"), pct("b_noise_pct")
    out["B/A"] = df["ratio"].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.2f}")
    out["verdict"], out["note"] = df["verdict"], df["note"]
    return out


def markdown(df: pd.DataFrame, keys: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped), for a pull request."""
    shown = display(df, keys)
    cells = [[str(c) for c in shown.columns]] + [[str(v).replace("|", "\\|") for v in r]
                                                 for r in shown.itertuples(index=False)]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("---" for _ in shown.columns) + "|")
    return "\n".join(lines)


def summary(df: pd.DataFrame) -> str:
    counts = df["verdict"].value_counts()
    order = ["worse", "failed", "better", "fixed", SAME, "only in A", "only in B"]
    return ", ".join(f"{counts[v]} {v}" for v in order if v in counts) or "no case in common"
