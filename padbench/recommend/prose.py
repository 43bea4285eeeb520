"""The verdict: one paragraph saying what to use for the user's lengths, and how sure to be."""

from __future__ import annotations

import os

from ..judge import BASELINE
from .ranking import rank, recommended

# A runner-up closer than this (relative tokens/s) is within noise of the winner.
NOISE = 0.05
# Rounds of one strategy on one draw differing by more than this (max - min over median): noisy.
NOISY = 0.5
# A 1-minute load average of at least this x the CPUs (and at least 1) when measuring starts: busy.
BUSY = 0.5


def _err_text(e: dict, mode: str) -> str:
    parts = []
    if e.get("max_rel_err") is not None:
        parts.append(f"max rel err {e['max_rel_err']:.0e}")
    if mode == "training" and e.get("grad_rel_err") is not None:
        parts.append(f"grad rel err {e['grad_rel_err']:.0e}")
    return ", ".join(parts)


def machine_load() -> dict:
    """1-minute load average and CPU count: is something else running on this machine?"""
    try:
        load1 = os.getloadavg()[0]
    except (OSError, AttributeError):
        load1 = None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"load1": load1, "cpus": cpus, "busy": bool(load1 is not None and cpus and load1 >= max(1.0, BUSY * cpus))}


def verdict(entries: list[dict], *, device: str, mode: str, batch_size: int, pad: float | None,
            prefix: str = "", load: dict | None = None) -> str:
    """One line: what to use for the user's lengths, how much faster than `padded`, at what error."""
    where = f"{prefix}for your lengths (B={batch_size}, padding ratio {pad:.2f}) on {device} {mode}" \
        if pad is not None else f"{prefix}for your lengths (B={batch_size}) on {device} {mode}"
    best = recommended(entries)
    ranked = rank(entries)
    if best is None:
        return f"{where}, no strategy was measured to compute the reference function: nothing to recommend."
    base = next((e for e in entries if e["strategy"] == BASELINE and e["status"] == "ok"), None)
    ahead = ranked[: ranked.index(best)]
    faster_bad = [e["strategy"] for e in ahead if e["status"] == "not equivalent"]
    errs = _err_text(best, mode)
    same = f"same results ({errs})" if errs else "same results"
    if best["strategy"] == BASELINE:
        runner = next((e for e in ranked if e is not best and e["status"] == "ok" and e["equivalent"]), None)
        tail = f" (next best: `{runner['strategy']}` at {runner['speedup_vs_padded']:.2f}x)" if runner and \
            runner.get("speedup_vs_padded") else ""
        text = f"{where}, keep `{BASELINE}`: nothing that computes the same function was faster{tail}."
    elif base is None or best.get("speedup_vs_padded") is None:
        what_base = "was not measured" if base is None else "does not match the reference"
        text = (f"{where}, use `{best['strategy']}`: the fastest strategy that computes the reference function "
                f"({best['tokens_per_s']:,.0f} real tokens/s, {same}); `{BASELINE}` {what_base}.")
    else:
        text = (f"{where}, use `{best['strategy']}`: {best['speedup_vs_padded']:.2f}x the tokens/s of "
                f"{BASELINE}, {same}.")

    def speed(e):  # speedup where both have one (timed side by side with padded), else tokens/s
        both = e.get("speedup_vs_padded") is not None and best.get("speedup_vs_padded") is not None
        return (e["speedup_vs_padded"], best["speedup_vs_padded"]) if both else (e["tokens_per_s"] or 0.0,
                                                                                 best["tokens_per_s"])

    close = [e for e in ranked if e is not best and e["status"] == "ok" and e["equivalent"]
             and speed(e)[0] >= (1 - NOISE) * speed(e)[1]]
    if close and best["strategy"] != BASELINE:
        names = ", ".join(f"`{e['strategy']}`" for e in close)
        text += f" {names} {'is' if len(close) == 1 else 'are'} within {int(NOISE * 100)}% (as good, within noise)."
    if faster_bad:
        names = ", ".join(f"`{s}`" for s in faster_bad)
        text += f" Faster but not equivalent to the reference, so not recommended: {names}."
    spread = max((e.get("round_spread") or 0.0) for e in (best, base) if e)
    if load and load.get("busy"):
        text += (f" The machine was busy (load {load['load1']:.1f} on {load['cpus']} CPUs): strategies made of many "
                 "small operations slow down the most when other processes compete for the cores; rerun on an "
                 "idle machine for a firmer ranking.")
    elif spread > NOISY:
        text += (f" Timings were noisy (rounds of one strategy differed by up to {spread:.0%}): the machine is busy;"
                 " rerun (or add --draws) for firmer numbers.")
    return text
