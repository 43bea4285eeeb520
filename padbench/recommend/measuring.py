"""`measure`: the plan of a measured `padbench recommend` (screen, records, other draws, memory).

1. **screen** (first draw): every strategy goes through its preparation batch
   (`padbench.runner.warm_up`: kernel builds, compilation, autotuning happen there and are
   reported as ``prepare_s``, never timed), then all are timed in interleaved rounds
   (`padbench.recommend.timing`). Only steady batches decide: a strategy whose one steady batch
   is far slower than the others' (`SCREEN_SKIP`, `SCREEN_SKIP_MIN_S`) is not timed, and one
   slower than `SCREEN_DROP` x the fastest round is not timed again.
2. **records**: `padded` and then the fastest strategies, in order of screened speed, get a
   `padbench.runner.measure_case` record (status, equivalence, FLOPs), judged by `padbench.judge`.
   Up to `MAX_FINALISTS` equivalent ones within `SCREEN_KEEP` x the fastest *equivalent* one go
   on, so a fast wrong strategy screens out nothing.
3. **other draws**: the equivalent finalists and `padded`, side by side again in interleaved rounds.
4. **memory**: peak memory of one batch per measured strategy (`padbench.runner.peak_memory`).
"""

from __future__ import annotations

import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import models
from ..judge import BASELINE, equivalent
from ..measure import useful_flops
from ..runner import Case, lengths_for, measure_case, peak_memory
from .source import DRAWS, LengthSource, batch_info, pick_seeds
from .timing import BLOCK_S, ROUNDS, SCREEN_ROUNDS, interleaved, prepare_warm

# Soft limit on a default run: a further draw starts only while this many seconds have not passed.
TIME_BUDGET_S = 60.0
# measure_case makes each finalist's record (status, equivalence, FLOPs); its own timing is brief,
# the ranking uses the interleaved rounds.
RECORD_TIMING = {"min_run_time": 0.05, "max_run_time": 0.3}
# Screening (first draw): after each round a strategy slower than SCREEN_DROP x the fastest is
# not timed again; then the fastest MAX_FINALISTS within SCREEN_KEEP x the fastest equivalent one
# (and always `padded`) are checked and measured on the other draws.
SCREEN_KEEP = 1.75
MAX_FINALISTS = 3
SCREEN_DROP = 3.0
# A steady batch (the one after the preparation batch) this many times slower than the fastest
# one so far is not timed at all, when it is long enough (SCREEN_SKIP_MIN_S) for noise not to matter.
SCREEN_SKIP = 4.0
SCREEN_SKIP_MIN_S = 0.5


def strategy_order(strategies) -> list[str]:
    """``strategies`` without repeats, `padded` first."""
    return sorted(dict.fromkeys(strategies), key=lambda s: s != BASELINE)


def _screen(case0, order, *, rounds: int, block_s: float, screen_first: bool, tick, phase) -> tuple[dict, dict]:
    """First draw: (screen {strategy: {status, time_s, timed, prepare_s[, message]}}, {strategy: [s per round]})."""
    screen, prepared, batch_s = {}, {}, {}
    for s in order:
        p, warm = prepare_warm(case0(s))
        tick(f"warm up {s}")
        if p is None:
            screen[s] = warm
            continue
        steady = warm["first_batch_s"]
        screen[s] = {"status": "ok", "time_s": steady, "timed": 0, "prepare_s": warm["prepare_s"]}
        fastest = min(batch_s.values(), default=None)
        if screen_first and fastest is not None and s != BASELINE and steady > SCREEN_SKIP * fastest \
                and steady > SCREEN_SKIP_MIN_S:
            continue  # one steady batch of it is far slower than the others', even allowing for noise
        prepared[s], batch_s[s] = p, steady
    phase("warm_up")
    times = interleaved(prepared, rounds, block_s, batch_s=batch_s, keep=(BASELINE,),
                        drop=SCREEN_DROP if screen_first else None, on_round=lambda: tick("interleaved rounds"))
    del prepared
    for s, t in times.items():
        if isinstance(t, dict):
            screen[s] = {**t, "prepare_s": screen[s]["prepare_s"]}
        elif t:
            screen[s].update(time_s=float(np.median(t)), timed=len(t))
    phase("screen_rounds")
    return screen, {s: t for s, t in times.items() if isinstance(t, list) and t}


def _finalists(timed: dict, check, screen_first: bool) -> list[str]:
    """`padded`, then the fastest screened strategies in order of speed, each `check`-ed (True: equivalent).

    The screen compares against the fastest strategy *known to be equivalent*, so a fast wrong
    one cannot screen out the right ones.
    """
    med = {s: float(np.median(t)) for s, t in timed.items()}
    finalists = []
    if BASELINE in timed:
        finalists.append(BASELINE)
        check(BASELINE)
    ref, n_eq = med.get(BASELINE, math.inf), 0
    for s in sorted((s for s in timed if s != BASELINE), key=med.get):
        if screen_first and (n_eq >= MAX_FINALISTS or med[s] > SCREEN_KEEP * ref):
            break
        finalists.append(s)
        if check(s):
            n_eq += 1
            ref = min(ref, med[s])
    return finalists


def _draw(cases, strategies, *, rounds: int, block_s: float, tick) -> dict:
    """One further draw: ``strategies`` prepared on it and timed side by side: {strategy: [s per round]}."""
    prepared, batch_s = {}, {}
    for s in strategies:
        p, warm = prepare_warm(cases(s))
        tick(f"warm up {s}")
        if p is not None:
            prepared[s], batch_s[s] = p, warm["first_batch_s"]
    times = interleaved(prepared, rounds, block_s, batch_s=batch_s, on_round=lambda: tick("rounds"))
    return {s: t for s, t in times.items() if isinstance(t, list) and t}


def _peak_memory(cases, strategies, records: dict, device: str, bar) -> None:
    """Each strategy's peak memory of one batch into its record (one fresh process each on CPU)."""
    def probe(s):
        try:
            return s, peak_memory(cases(s).validate())
        except Exception as exc:  # noqa: BLE001 - memory is extra: keep the timings
            return s, exc

    bar.set_description("peak memory")
    with ThreadPoolExecutor(max_workers=2 if device == "cpu" else 1) as pool:
        for s, peak in pool.map(probe, strategies):
            if isinstance(peak, Exception):
                records[s]["message"] = (records[s].get("message") or "") + f" (memory probe failed: {peak})"
            else:
                records[s]["peak_mem_bytes"] = peak
            bar.update(1)


def measure(source: LengthSource, *, device: str, mode: str, spec, strategies, seed: int = 0, draws: int = DRAWS,
            screen_first: bool = True, memory: bool = True, screen_rounds: int = SCREEN_ROUNDS, rounds: int = ROUNDS,
            block_s: float = BLOCK_S, budget_s: float | None = None, progress: bool = True,
            model: dict | None = None) -> dict:
    """Measure ``strategies`` and `padded` on ``draws`` batches drawn from ``source`` (module docstring).

    Returns ``{"records": {strategy: measure_case record of the first draw},
    "times": {strategy: {draw: [s per batch per round]}}, "tokens": {draw: real tokens},
    "useful_flops": {draw: FLOPs}, "screen": {strategy: {status, time_s, timed, prepare_s, message}},
    "finalists": [...], "seeds": [...], "draws_measured": n, "batches": [...], "phases_s": {...}}``.
    ``budget_s``: a soft limit on the seconds spent: a further draw starts only while it lasts (the
    first draw is always measured in full).
    """
    from tqdm import tqdm

    order = strategy_order([BASELINE, *strategies])
    start = time.monotonic()
    model = model or {}
    shape = models.describe(model.get("model", "spec"), model.get("hf_config", ""), spec, seed).shape  # FLOPs
    seeds = pick_seeds(source, shape, mode, seed, draws)
    draws = len(seeds)
    phases: dict[str, float] = {}

    def phase(name):
        phases[name] = round(max(0.0, time.monotonic() - start - sum(phases.values())), 2)

    def case(i):
        return lambda s: Case(s, source.distribution, device, mode, source.batch_size, source.max_len, spec, seeds[i],
                              **model)

    n_final = min(len(order), 1 + MAX_FINALISTS) if screen_first else len(order)
    bar = tqdm(total=len(order) + screen_rounds + n_final * (1 + (draws - 1) * (1 + rounds) + memory), unit="step",
               file=sys.stderr, disable=not progress, leave=False)
    tick = lambda desc: (bar.set_description(desc), bar.update(1))  # noqa: E731
    records: dict[str, dict] = {}

    def check(s):
        records[s] = measure_case(case(0)(s), memory=False, check_equivalence=True, **RECORD_TIMING)
        tick(f"equivalence {s}")
        return records[s]["status"] == "ok" and equivalent(records[s])

    try:
        screen, timed = _screen(case(0), order, rounds=screen_rounds, block_s=block_s, screen_first=screen_first,
                                tick=tick, phase=phase)
        finalists = [s for s in order if s in _finalists(timed, check, screen_first)]
        times = {s: {0: timed[s]} for s in finalists}
        bar.total = bar.n + len(finalists) * ((draws - 1) * (1 + rounds) + memory) + (draws - 1)
        bar.refresh()
        alive = [s for s in finalists if records[s]["status"] == "ok" and equivalent(records[s])]
        phase("records")
        draws_measured = 1
        for i in range(1, draws):
            if budget_s is not None and time.monotonic() - start > budget_s:
                break
            draws_measured = i + 1
            for s, t in _draw(case(i), alive, rounds=rounds, block_s=block_s,
                              tick=lambda what, i=i: tick(f"draw {i + 1}/{draws} {what}")).items():
                times[s][i] = t
        phase("other_draws")
        if memory:
            _peak_memory(case(0), [s for s in finalists if records[s]["status"] == "ok"], records, device, bar)
            phase("memory")
    finally:
        bar.close()
    lens = {i: lengths_for(source.distribution, source.batch_size, source.max_len, seeds[i], None)
            for i in range(draws_measured)}
    return {"records": records, "times": times, "tokens": {i: sum(n) for i, n in lens.items()},
            "useful_flops": {i: useful_flops(n, shape, mode) for i, n in lens.items()}, "screen": screen,
            "finalists": finalists, "seeds": seeds[:draws_measured], "draws_measured": draws_measured,
            "batches": [batch_info(source, sd) for sd in seeds[:draws_measured]], "phases_s": phases}
