"""From timings and records to ranked entries: one entry (a dict) per strategy.

An entry's keys are `ENTRY_KEYS` plus ``max_rel_err``, ``grad_rel_err``, ``message``, ``draws``,
``speedup_per_draw``, ``round_spread``, ``prepare_s`` and ``time_s``. Whether a strategy computes
the reference function is `padbench.judge`'s call, nowhere else's.
"""

from __future__ import annotations

import numpy as np

from ..judge import BASELINE, judge, number

ENTRY_KEYS = ("strategy", "tokens_per_s", "speedup_vs_padded", "peak_mem_bytes", "efficiency", "equivalent", "status")

STATUS_ORDER = {"ok": 0, "not equivalent": 0, "screened out": 1, "oom": 2, "error": 2, "unsupported": 3}


def entry(strategy: str, **kw) -> dict:
    """One ranked row: every key present (None where unknown), ``kw`` filled in."""
    e = dict.fromkeys(ENTRY_KEYS)
    e.update(strategy=strategy, equivalent=None, status="error", message="", max_rel_err=None, grad_rel_err=None,
             draws=0, speedup_per_draw=[], round_spread=None, prepare_s=None, time_s=None)
    e.update(kw)
    return e


def time_speedup(baseline_s, own_s) -> float | None:
    """`padded`'s seconds per batch over a strategy's on the same batch: above 1 is faster than `padded`."""
    baseline_s, own_s = number(baseline_s), number(own_s)
    return baseline_s / own_s if baseline_s and own_s else None


def aggregate(measured: dict) -> list[dict]:
    """Ranked entries (see `rank`) from `padbench.recommend.measure`'s output.

    Per draw a strategy's time per batch is the median of its rounds. Its tokens/s (real tokens
    over time), efficiency and speedup (`padded`'s time over its own on the same batch) are the
    median over draws: a typical batch, robust to one odd batch or one noisy draw. Strategies
    are ranked by speedup.
    """
    records, times, tokens = measured["records"], measured["times"], measured["tokens"]
    screened = measured["screen"]
    med = {s: {i: float(np.median(t)) for i, t in per.items()} for s, per in times.items()}
    base = med.get(BASELINE, {})
    entries = []
    for s, rec in records.items():
        prep = screened.get(s, {}).get("prepare_s")
        if rec["status"] != "ok":
            entries.append(entry(s, status=rec["status"], message=rec.get("message") or "", prepare_s=prep))
            continue
        eq, why_not = judge(rec)
        mine = med.get(s, {})
        draws = sorted(mine)
        per_draw = [time_speedup(base[i], mine[i]) for i in draws if i in base]
        matmul = number(rec.get("matmul_flops"))
        spread = [float((np.max(times[s][i]) - np.min(times[s][i])) / np.median(times[s][i])) for i in draws]
        message = "; ".join(m for m in (rec.get("message") or "", why_not) if m)
        entries.append(entry(
            s, tokens_per_s=float(np.median([tokens[i] / mine[i] for i in draws])) if draws else None,
            speedup_vs_padded=float(np.median(per_draw)) if per_draw else None,
            peak_mem_bytes=number(rec.get("peak_mem_bytes")),
            efficiency=float(np.median([measured["useful_flops"][i] / mine[i] / matmul for i in draws]))
            if draws and matmul else None,
            equivalent=eq, status="ok" if eq else "not equivalent", message=message,
            max_rel_err=number(rec.get("max_rel_err")), grad_rel_err=number(rec.get("grad_rel_err")),
            draws=len(draws), time_s=float(np.median([mine[i] for i in draws])) if draws else None,
            speedup_per_draw=[round(x, 3) for x in per_draw], round_spread=round(max(spread), 3) if spread else None,
            prepare_s=prep,
        ))
    entries += _first_draw_entries(screened, skip=set(records), base_entry=next(
        (e for e in entries if e["strategy"] == BASELINE and e["status"] == "ok"), None))
    return rank(entries)


def _first_draw_entries(screened: dict, *, skip: set, base_entry: dict | None) -> list[dict]:
    """Strategies not measured further (screened out), unsupported and failing ones: what the first draw saw."""
    base_s = screened.get(BASELINE, {}).get("time_s")
    fastest = min((r["time_s"] for r in screened.values() if r.get("status") == "ok" and r.get("timed")), default=None)
    out = []
    for s, res in screened.items():
        if s in skip:
            continue
        if res.get("status") != "ok" or not res.get("time_s"):
            out.append(entry(s, status=res.get("status", "error"), message=res.get("message", ""),
                             prepare_s=res.get("prepare_s")))
            continue
        # timed: its median round; not timed (skipped): its one steady batch, a rough bound
        sp = time_speedup(base_s, res["time_s"])
        if res.get("timed"):
            how = f"{res['time_s'] / fastest:.1f}x the fastest's time per batch on the first draw" if fastest \
                else "slow on the first draw"
        else:
            how = f"one batch (after its preparation) took {res['time_s']:.2f} s, far longer than the others'"
        out.append(entry(
            s, status="screened out", speedup_vs_padded=sp, prepare_s=res.get("prepare_s"),
            message=f"{how}; not measured further, numbers are rough (--no-screen measures it)",
            # on the same scale as the measured rows: padded's measured rate x the screened ratio
            tokens_per_s=sp * base_entry["tokens_per_s"] if sp and base_entry and base_entry["tokens_per_s"] else None,
        ))
    return out


def rank(entries: list[dict]) -> list[dict]:
    """Measured strategies fastest first (by speedup over `padded`, by tokens/s where there is none),
    then screened-out, failed and unsupported ones."""
    def key(e):
        sp = e.get("speedup_vs_padded")
        return (STATUS_ORDER.get(e["status"], 2), -(sp if sp is not None else -1.0), -(e["tokens_per_s"] or -1.0),
                e["strategy"])

    return sorted(entries, key=key)


def recommended(entries: list[dict]) -> dict | None:
    """The fastest measured strategy that computes the reference function (never a non-equivalent one)."""
    for e in rank(entries):
        if e["status"] == "ok" and e["equivalent"] is True and e["tokens_per_s"]:
            return e
    return None
