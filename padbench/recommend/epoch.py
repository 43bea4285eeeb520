"""``recommend --epoch``: the (policy, strategy) pair whose whole epoch of the user's lengths is shortest.

`padbench.epoch.measure_epochs` makes one row per pair (the rows of ``padbench epoch``); `choose`
ranks the rows that were measured in full (status ``ok``) and compute the reference function
(``equivalent`` true: `padbench.judge`'s call, made when the pair was prepared) by their epoch
time, and lists every other pair as excluded, with why (not equivalent, unsupported, oom,
error, interrupted). The baseline is `random` + `padded` (shuffle, pad to each batch's longest:
what most training code does); `advise_epoch` always measures it.
"""

from __future__ import annotations

import time

import numpy as np

from ..epoch import EpochConfig, measure_epochs, strategies_for
from ..epoch.policies import POLICIES, SHAPE
from ..epoch.table import BASELINE
from ..judge import number
from .prose import machine_load

# The facts of a pair the advice and its JSON carry.
PAIR_KEYS = ("policy", "strategy", "status", "epoch_s", "epoch_s_low", "epoch_s_high", "padding_fraction",
             "shuffled", "steps", "tokens_per_s", "peak_mem_bytes", "max_rel_err", "grad_rel_err",
             "measured_batches")


def pair(row: dict | None) -> dict | None:
    return None if row is None else {k: row.get(k) for k in PAIR_KEYS}


def exclusion(row: dict) -> str | None:
    """Why ``row`` cannot be recommended, or None when it can."""
    status = row.get("status")
    message = (row.get("message") or "").strip()
    if status != "ok":
        return f"{status}: {message}" if message else str(status)
    if row.get("equivalent") is not True:
        why = (row.get("why_not") or "").strip()
        if row.get("equivalent") is None:
            return "equivalence not checked"
        return f"not equivalent: {why}" if why else "not equivalent"
    if number(row.get("epoch_s")) is None:
        return "no epoch time"
    return None


def ratio(slow: dict | None, fast: dict | None) -> float | None:
    """How many times shorter ``fast``'s epoch is than ``slow``'s."""
    a, b = (number((r or {}).get("epoch_s")) for r in (slow, fast))
    return a / b if a and b else None


def overlap(a: dict, b: dict) -> bool:
    """Whether two pairs' 95% intervals overlap (as good as each other, within the estimate's noise)."""
    lo = [number(r.get("epoch_s_low")) or number(r["epoch_s"]) for r in (a, b)]
    hi = [number(r.get("epoch_s_high")) or number(r["epoch_s"]) for r in (a, b)]
    return lo[0] <= hi[1] and lo[1] <= hi[0]


def choose(rows: list[dict], *, current: str | None = None, mode: str | None = None) -> dict:
    """The pair with the shortest equivalent epoch and what it is compared with.

    Returns ``{"chosen", "runner_up", "baseline", "vs_baseline", "current", "excluded"}``: pairs
    as `pair` makes them (None where there is none), ``baseline`` being `random` + `padded`
    whatever its status, ``current`` ``{"policy", "best", "ratio"}`` (the shortest equivalent epoch
    of the user's ``current`` policy, None if not given) and ``excluded`` ``[{"policy",
    "strategy", "status", "reason"}]``. ``mode`` keeps the rows of one mode.
    """
    rows = [r for r in rows if mode is None or r.get("mode") == mode]
    eligible = sorted((r for r in rows if exclusion(r) is None), key=lambda r: (number(r["epoch_s"]), r["policy"],
                                                                               r["strategy"]))
    chosen = eligible[0] if eligible else None
    base = next((r for r in rows if (r["policy"], r["strategy"]) == BASELINE), None)
    out = {
        "chosen": pair(chosen),
        "runner_up": pair(eligible[1]) if len(eligible) > 1 else None,
        "baseline": pair(base),
        "vs_baseline": ratio(base, chosen) if base is not None and exclusion(base) is None else None,
        "current": None,
        "excluded": [{"policy": r["policy"], "strategy": r["strategy"], "status": r.get("status"),
                      "reason": exclusion(r)} for r in rows if exclusion(r) is not None],
    }
    if current:
        best = next((r for r in eligible if r["policy"] == current), None)
        out["current"] = {"policy": current, "best": pair(best), "ratio": ratio(best, chosen)}
    return out


def lengths_summary(lengths, source: str) -> dict:
    lens = np.asarray(lengths)
    return {"source": source, "count": int(lens.size), "mean": float(lens.mean()), "max": int(lens.max()),
            "p95": float(np.percentile(lens, 95)), "tokens": int(lens.sum())}


def advise_epoch(lengths, cfg: EpochConfig, *, policies, strategies, source: str, current: str | None = None,
                 progress: bool = True) -> dict:
    """Measure one epoch per (policy, strategy) and choose (`choose`): the `epoch_output.epoch_document`.

    ``random`` and `padded` are always measured (the baseline), as is the ``current`` policy.
    """
    from .epoch_output import epoch_document

    strategies = list(dict.fromkeys([BASELINE[1], *strategies]))
    wanted = {BASELINE[0], *policies, *([current] if current else [])}
    policies = [p for p in POLICIES if p in wanted and strategies_for(p, strategies)]
    load = machine_load()
    start = time.monotonic()
    rows = measure_epochs(lengths, policies, strategies, cfg, progress=progress)
    seconds = time.monotonic() - start
    choice = choose(rows, current=current, mode=cfg.mode)
    shape = SHAPE[choice["chosen"]["policy"]] if choice["chosen"] else None
    return epoch_document(rows, choice, cfg=cfg, policies=policies, strategies=strategies,
                          lengths=lengths_summary(lengths, source), shape=shape, seconds=seconds, load=load)
