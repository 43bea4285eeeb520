"""The report's judgement: every row judged by `padbench.judge`, and one written verdict per distribution.

The verdict is what a reader acts on, so it names only a strategy that computes the reference
function: a faster one that does not is named as excluded, never recommended.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd

from .. import judge
from ..table import GROUP

BASELINE = judge.BASELINE
# Rows that share these were measured on the same batches and weights in the same run, so
# their tokens/s compare; a speedup is only taken between such rows.
SAME_CASE = ["run", *GROUP]


def add_judgement(df: pd.DataFrame) -> pd.DataFrame:
    """Adds ``equivalent``, ``why_not`` and ``speedup`` (over padded in the same run and case).

    asv timed both strategies side by side in one process and tracked their ratio: that
    ``speedup`` is kept where present; elsewhere it is the ratio of the rows' tokens/s.
    """
    df = judge.judge_frame(df)
    computed = judge.speedup(df, SAME_CASE)
    tracked = pd.to_numeric(df.get("speedup", pd.Series(float("nan"), index=df.index)), errors="coerce")
    df["speedup"] = tracked.where(tracked.notna(), computed).astype(float)
    return df


@dataclass
class Verdict:
    distribution: str
    text: str
    winner: str | None
    speedup: float | None


def _pct(x) -> str:
    f = judge.number(x)
    return "?" if f is None else f"{100 * f:.0f}%"


def _code(name) -> str:
    return f"<code>{html.escape(str(name))}</code>"


def _verdict(dist, g: pd.DataFrame, device: str, mode: str) -> Verdict:
    pad = _pct(g["padding_ratio"].dropna().iloc[0]) if g["padding_ratio"].notna().any() else "?"
    where = f"On <b>{html.escape(str(dist))}</b> lengths (padding {pad}) on {device.upper()} {mode}"
    ok = g[g["status"] == "ok"]
    eq = ok[ok["equivalent"]].copy()
    eq["_tps"] = pd.to_numeric(eq["tokens_per_s"], errors="coerce")
    eq = eq[eq["_tps"].notna()]
    base = ok[ok["strategy"] == BASELINE]
    if eq.empty:
        return Verdict(dist, f"{where}, no strategy was measured to compute the reference function; "
                             "nothing to recommend.", None, None)
    best = eq.sort_values("_tps", ascending=False).iloc[0]
    name, tps = best["strategy"], best["_tps"]
    faster_bad = ok[(~ok["equivalent"]) & (pd.to_numeric(ok["tokens_per_s"], errors="coerce") > tps)]
    excluded = ""
    if len(faster_bad):
        names = ", ".join(_code(s) for s in faster_bad["strategy"])
        excluded = (" Faster but unverified (equivalence to the reference failed or not checked), "
                    f"so not counted: {names}.")
    if base.empty or not bool(base["equivalent"].iloc[0]):
        what = "was not measured" if base.empty else "does not match the reference"
        text = (f"{where}, {_code(name)} is the fastest strategy that computes the "
                f"reference function ({tps:,.0f} real tokens/s); {_code(BASELINE)} {what}.")
        return Verdict(dist, text + excluded, name, None)
    base_tps = judge.number(base["tokens_per_s"].iloc[0]) or float("nan")
    sp = judge.number(best["speedup"])
    if name == BASELINE or sp is None or sp <= 1.0:
        text = (f"{where}, {_code(BASELINE)} is as fast as anything that computes the same function "
                f"({base_tps:,.0f} real tokens/s): keep it.")
        return Verdict(dist, text + excluded, BASELINE, 1.0)
    text = (f"{where}, {_code(name)} is <b>{sp:.2f}×</b> faster than {_code(BASELINE)} at equal results "
            f"({tps:,.0f} vs {base_tps:,.0f} real tokens/s).")
    return Verdict(dist, text + excluded, name, sp)


def verdicts(df: pd.DataFrame, device: str, mode: str) -> list[Verdict]:
    """One verdict per distribution of an already judged (`add_judgement`) section."""
    return [_verdict(dist, g, device, mode) for dist, g in df.groupby("distribution", sort=True)]
