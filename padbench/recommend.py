"""`padbench recommend`: which batching strategy to use for *your* sequence lengths.

Give it your lengths (``--lengths FILE``: one integer per line or a ``.npy`` array; or a named
distribution with ``--dist NAME``) and the model, device and mode you care about. By default it
measures, on batches drawn from your lengths (with replacement, seeded: the ``file:PATH``
distribution), every strategy this machine supports, through `padbench.runner.measure_case`,
the same code path as ``padbench run``:

1. **draws**: ``--draws`` batches (default 3) drawn from your lengths, picked among 64 seeded
   draws at the quantiles of their padded/real work ratio, the median batch first (`pick_seeds`).
2. **screen** (first draw): every strategy is warmed up (compiled ones compile here), then timed
   in *interleaved rounds*: each round times one block of every strategy in turn, so load from
   other processes hits them alike; a strategy's time on a draw is its median round. Clearly
   slow ones stop being timed (`SCREEN_DROP`, `SCREEN_SKIP`).
3. **records**: `padded` and then the fastest strategies, in order of screened speed, get a
   `measure_case` record (status, equivalence against the float64 reference: ``max_rel_err``,
   ``grad_rel_err``, pad-content invariance, no NaN with an empty sequence, judged by
   `padbench.table.equivalent`; FLOPs). Up to `MAX_FINALISTS` equivalent ones within
   `SCREEN_KEEP` x the fastest *equivalent* one go on, so a fast wrong strategy screens out nothing.
4. **other draws**: the finalists and `padded` are timed side by side again, in interleaved rounds.
5. **memory**: peak memory of one batch per measured strategy (fresh process on CPU) unless
   ``--no-memory``.

A strategy's tokens/s, efficiency and speedup (`padded`'s time over its own on the same batch)
are medians over the draws; the ranking follows the speedup. A strategy that is not equivalent is never recommended. ``--time-budget`` (default 60 s)
is a soft limit: a further draw starts only while it lasts.

With ``--from-results PATH`` (padbench ``.pbjson`` files or asv results) nothing is measured:
the measured case nearest to your lengths (same device, mode and model; closest padding ratio,
mean length, length spread and batch size) is ranked instead, and how far it is from yours is
said.
"""

from __future__ import annotations

import math
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .errors import PadbenchError, UnsupportedError
from .lengths import DISTRIBUTIONS, padding_ratio, read_lengths_file, sample_lengths, validate_lengths
from .runner import Case, measure_case, prepare

BASELINE = "padded"
# Timing: interleaved rounds (each round times one block of every strategy in turn); a block
# repeats a batch until it lasts BLOCK_S. A strategy's time on a draw is its median round.
# The first draw (which also screens) gets SCREEN_ROUNDS rounds, the other draws ROUNDS.
DRAWS = 3
# Soft limit on a default run: a further draw starts only while this many seconds have not passed.
TIME_BUDGET_S = 60.0
# Draws are picked among this many seeded batches (see `pick_seeds`).
SEED_POOL = 64
SCREEN_ROUNDS = 4
ROUNDS = 3
BLOCK_S = 0.2
QUICK = {"draws": 1, "screen_rounds": 3, "rounds": 3, "block_s": 0.05}
# measure_case makes each finalist's record (status, equivalence, FLOPs); its own timing is brief,
# the ranking uses the interleaved rounds.
RECORD_TIMING = {"min_run_time": 0.05, "max_run_time": 0.3}
# Screening (first draw): after each round a strategy slower than SCREEN_DROP x the fastest is
# not timed again; then the fastest MAX_FINALISTS within SCREEN_KEEP x the fastest (and always
# `padded`) are checked and measured on the other draws.
SCREEN_KEEP = 1.75
MAX_FINALISTS = 3
SCREEN_DROP = 3.0
# A (non-compiling) first batch this many times slower than the fastest first batch is not
# timed at all, when it is long enough (SCREEN_SKIP_MIN_S) for first-call overhead not to matter.
SCREEN_SKIP = 4.0
SCREEN_SKIP_MIN_S = 0.5
# Draws used to summarize a length source (expected padding ratio of a batch of B).
SUMMARY_DRAWS = 256
# A runner-up closer than this (relative tokens/s) is within noise of the winner.
NOISE = 0.05
# Rounds of one strategy on one draw differing by more than this (max - min over median): noisy.
NOISY = 0.5
# A 1-minute load average of at least this x the CPUs (and at least 1) when measuring starts: busy.
BUSY = 0.5

ENTRY_KEYS = ("strategy", "tokens_per_s", "speedup_vs_padded", "peak_mem_bytes", "efficiency", "equivalent", "status")


# ------------------------------------------------------------------------------- lengths
@dataclass
class LengthSource:
    """The user's lengths: a padbench distribution string plus a summary of what it yields."""

    distribution: str  # "file:PATH" or a named distribution
    label: str
    batch_size: int
    max_len: int | None
    summary: dict = field(default_factory=dict)


def _draw_pool(source: str, batch_size: int, max_len: int | None, seed: int, draws: int) -> list[np.ndarray]:
    """``draws`` batches of ``batch_size`` lengths as the measurement would draw them (other seeds)."""
    if source.startswith("file:"):
        pool = read_lengths_file(source[5:])
        rng = np.random.default_rng(10_000 + seed)
        return [rng.choice(pool, size=batch_size, replace=True) for _ in range(draws)]
    return [sample_lengths(source, batch_size, max_len, 10_000 + seed + i) for i in range(draws)]


def _features(batches) -> dict:
    """Padding ratio, mean length, expected batch max and coefficient of variation of batches."""
    allv = np.concatenate([np.asarray(b, dtype=np.float64) for b in batches])
    mean = float(allv.mean())
    return {
        "padding_ratio": float(np.mean([padding_ratio(b) for b in batches])),
        "mean": mean,
        "batch_max": float(np.mean([np.max(b) for b in batches])),
        "cv": float(allv.std() / mean) if mean > 0 else 0.0,
    }


def resolve_lengths(lengths_file: str | None, dist: str | None, batch_size: int, max_len: int | None,
                    seed: int = 0) -> LengthSource:
    """Validate the user's lengths and summarize them; raises PadbenchError on bad input."""
    if lengths_file and dist:
        raise PadbenchError("give either --lengths FILE or --dist NAME, not both")
    if not lengths_file and not dist:
        raise PadbenchError("no lengths: give your lengths with --lengths FILE (one integer per line, or .npy) "
                            f"or a named distribution with --dist NAME ({', '.join(DISTRIBUTIONS)})")
    if lengths_file:
        pool = read_lengths_file(lengths_file)
        if max_len is not None:
            validate_lengths(pool, max_len)
        source = LengthSource(f"file:{lengths_file}", lengths_file, batch_size, max_len)
        summary = {"source": source.distribution, "count": int(pool.size), "mean": float(pool.mean()),
                   "max": int(pool.max()), "std": float(pool.std())}
    else:
        if dist.startswith("file:"):
            return resolve_lengths(dist[5:], None, batch_size, max_len, seed)
        if dist not in DISTRIBUTIONS:
            raise PadbenchError(f"unknown distribution {dist!r}; choose from {', '.join(DISTRIBUTIONS)} "
                                "(or give your own lengths with --lengths FILE)")
        source = LengthSource(dist, dist, batch_size, max_len)
        summary = {"source": dist}
    batches = _draw_pool(source.distribution, batch_size, max_len, seed, SUMMARY_DRAWS)
    feats = _features(batches)
    if not lengths_file:
        allv = np.concatenate(batches)
        summary.update(count=int(allv.size), mean=float(allv.mean()), max=int(allv.max()), std=float(allv.std()))
    summary.update(padding_ratio=feats["padding_ratio"], batch_size=batch_size, expected_batch_max=feats["batch_max"],
                   cv=feats["cv"])
    source.summary = summary
    return source


# ------------------------------------------------------------------------------- measuring
def pick_seeds(source: LengthSource, spec, mode: str, seed: int, draws: int, pool: int = SEED_POOL) -> list[int]:
    """Seeds of ``draws`` batches that span the typical batches of ``source``, the median one first.

    Of ``pool`` seeded draws (seeds ``seed`` .. ``seed + pool - 1``, as `padbench.runner.Case`
    draws them), the ones at the quantiles ``(k + 1/2) / draws`` of the work ratio padded/real
    (`padbench.measure.useful_flops` of the padded batch over that of its real tokens: padding and
    the attention's quadratic term in one number) are measured. A stratified sample: with a long
    tail of lengths, a batch's max, and with it padded's cost, varies a lot from draw to draw.
    """
    from .measure import useful_flops
    from .runner import lengths_for

    seeds = list(range(seed, seed + max(pool, draws)))
    if source.distribution.startswith("file:"):
        lens_pool = read_lengths_file(source.distribution[5:])  # read once; drawn as sample_lengths does
        batches = {sd: np.random.default_rng(sd).choice(lens_pool, size=source.batch_size, replace=True)
                   for sd in seeds}
        if any(tuple(int(n) for n in batches[sd]) != lengths_for(source.distribution, source.batch_size,
                                                                   source.max_len, sd, None) for sd in seeds[:2]):
            batches = {sd: lengths_for(source.distribution, source.batch_size, source.max_len, sd, None)
                       for sd in seeds}
    else:
        batches = {sd: sample_lengths(source.distribution, source.batch_size, source.max_len, sd) for sd in seeds}

    def ratio(sd):
        b = np.asarray(batches[sd])
        return useful_flops([int(b.max())] * len(b), spec, mode) / useful_flops(b, spec, mode)

    ranked = sorted(seeds, key=lambda sd: (ratio(sd), sd))
    n = len(ranked)
    qs = [(k + 0.5) / draws for k in range(draws)]
    picked = [ranked[min(n - 1, int(round(q * n - 0.5)))] for q in sorted(qs, key=lambda q: abs(q - 0.5))]
    return list(dict.fromkeys(picked))


def _failure(exc: BaseException) -> dict:
    first_line = (str(exc).splitlines() or [""])[0][:300]
    oom = "out of memory" in first_line.lower() or type(exc).__name__ == "OutOfMemoryError"
    return {"status": "oom" if oom else "error", "message": f"{type(exc).__name__}: {first_line}"}


def _block(prepared, block_s: float) -> float:
    """Seconds per batch over one block of back-to-back batches lasting at least ``block_s``."""
    import time

    n, t0 = 0, time.perf_counter()
    while True:
        prepared.step()  # synchronizes on CUDA
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= block_s or n >= 200:
            return elapsed / n


def interleaved(prepared: dict, rounds: int, block_s: float, *, keep=(), drop: float | None = None,
                on_round=None) -> dict:
    """Time ``prepared`` (strategy -> `Prepared`) in interleaved rounds: strategy -> [s per batch].

    Every round times one block of each strategy in turn, so a burst of load from other
    processes hits them alike. With ``drop``, a strategy slower than ``drop`` x the fastest
    (by its fastest round so far) is not timed again (``keep``: never dropped).
    """
    times = {s: [] for s in prepared}
    alive = dict(prepared)
    for _ in range(rounds):
        for s, p in list(alive.items()):
            try:
                times[s].append(_block(p, block_s))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - reported by the caller
                times[s] = _failure(exc)
                del alive[s]
        if drop:
            best = min((min(times[s]) for s in alive), default=None)
            for s in list(alive):
                if s not in keep and best and min(times[s]) > drop * best:
                    del alive[s]
        if on_round:
            on_round()
    return times


def _prepare_warm(case: Case):
    """(Prepared, seconds of its first timed batch) or (None, {status, message})."""
    import time

    from .strategies.nested_fastpath import NestedFastpath

    try:
        try:
            p = prepare(case)
        except UnsupportedError as exc:
            return None, {"status": "unsupported", "message": str(exc)}
        for _ in range(2 if p.strategy.needs_warmup else 0):
            p.step()  # compilation: not part of a batch's time
        t0 = time.perf_counter()
        if isinstance(p.strategy, NestedFastpath):
            if not p.strategy.probe(p.step):  # a silent fallback is not the nested path: not timed
                return None, {"status": "unsupported", "message": p.strategy.fallback_reason}
        else:
            p.step()
        return p, time.perf_counter() - t0
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a strategy that fails is reported, never raised
        return None, _failure(exc)


def _batch_info(source: LengthSource, seed: int) -> dict:
    from .runner import lengths_for

    lens = lengths_for(source.distribution, source.batch_size, source.max_len, seed, None)
    return {"seed": seed, "padding_ratio": padding_ratio(lens), "max": max(lens), "tokens": sum(lens)}


def _fmt_strategy_order(strategies) -> list[str]:
    return sorted(dict.fromkeys(strategies), key=lambda s: s != BASELINE)


def measure(source: LengthSource, *, device: str, mode: str, spec, strategies, seed: int = 0, draws: int = DRAWS,
            screen_first: bool = True, memory: bool = True, screen_rounds: int = SCREEN_ROUNDS, rounds: int = ROUNDS,
            block_s: float = BLOCK_S, budget_s: float | None = None, progress: bool = True) -> dict:
    """Measure ``strategies`` and `padded` on ``draws`` batches drawn from ``source`` (module docstring).

    Returns ``{"records": {strategy: measure_case record of the first draw},
    "times": {strategy: {draw: [s per batch per round]}}, "tokens": {draw: real tokens},
    "useful_flops": {(strategy, draw): FLOPs}, "screen": {strategy: {status, time_s, timed, message}},
    "finalists": [...], "draws_measured": n}``. ``budget_s``: a soft limit on the seconds spent: a further
    draw starts only while it lasts (the first draw is always measured in full).
    """
    import time

    from tqdm import tqdm

    from . import measure as measure_mod
    from .runner import lengths_for

    order = _fmt_strategy_order([BASELINE, *strategies])
    start = time.monotonic()
    seeds = pick_seeds(source, spec, mode, seed, draws)
    draws = len(seeds)
    phases: dict[str, float] = {}

    def phase(name):
        phases[name] = round(max(0.0, time.monotonic() - start - sum(phases.values())), 2)
    draws_measured = 1

    def case(strategy, i):
        return Case(strategy, source.distribution, device, mode, source.batch_size, source.max_len, spec, seeds[i])

    n_final = min(len(order), 1 + MAX_FINALISTS) if screen_first else len(order)
    bar = tqdm(total=len(order) + screen_rounds + n_final * (1 + (draws - 1) * (1 + rounds) + memory), unit="step",
               file=sys.stderr, disable=not progress, leave=False)
    tick = lambda desc: (bar.set_description(desc), bar.update(1))  # noqa: E731
    screen: dict[str, dict] = {}
    times: dict[str, dict] = {}
    records: dict[str, dict] = {}
    try:
        # 1. first draw: warm up every strategy, then interleaved rounds (dropping clearly slow ones)
        prepared, first_best = {}, None
        for s in order:
            p, first = _prepare_warm(case(s, 0))
            tick(f"warm up {s}")
            if p is None:
                screen[s] = first
                continue
            screen[s] = {"status": "ok", "time_s": first, "timed": 0}
            if screen_first and first_best is not None and s != BASELINE and first > SCREEN_SKIP * first_best \
                    and first > SCREEN_SKIP_MIN_S:
                continue  # its first batch alone is far slower than the others', even allowing for overhead
            prepared[s] = p
            if not p.strategy.needs_warmup:
                first_best = first if first_best is None else min(first_best, first)
        phase("warm_up")
        t0 = interleaved(prepared, screen_rounds, block_s, keep=(BASELINE,), drop=SCREEN_DROP if screen_first else None,
                         on_round=lambda: tick("interleaved rounds"))
        for s, t in t0.items():
            if isinstance(t, dict):
                screen[s] = t
            elif t:
                screen[s].update(time_s=float(np.median(t)), timed=len(t))
        timed = {s: t for s, t in t0.items() if isinstance(t, list) and t}
        med0 = {s: float(np.median(t)) for s, t in timed.items()}
        del prepared
        phase("screen_rounds")
        # 2. records (measure_case: status, equivalence, FLOPs; brief timing) of `padded` and of the
        # fastest screened strategies, in order of speed; the screen compares against the fastest
        # strategy *known to be equivalent*, so a fast wrong one cannot screen out the right ones.
        def check(s):
            records[s] = measure_case(case(s, 0), memory=False, check_equivalence=True, **RECORD_TIMING)
            tick(f"equivalence {s}")
            return records[s]["status"] == "ok" and _equivalent_record(records[s])

        finalists = []
        if BASELINE in timed:
            finalists.append(BASELINE)
            check(BASELINE)
        ref = med0.get(BASELINE, math.inf)
        n_eq = 0
        for s in sorted((s for s in timed if s != BASELINE), key=med0.get):
            if screen_first and (n_eq >= MAX_FINALISTS or med0[s] > SCREEN_KEEP * ref):
                break
            finalists.append(s)
            if check(s):
                n_eq += 1
                ref = min(ref, med0[s])
        finalists = [s for s in order if s in finalists]
        for s in finalists:
            times[s] = {0: timed[s]}
        bar.total = bar.n + len(finalists) * ((draws - 1) * (1 + rounds) + memory) + (draws - 1)
        bar.refresh()
        alive = [s for s in finalists if records[s]["status"] == "ok" and _equivalent_record(records[s])]
        phase("records")
        # 3. further draws: the equivalent finalists side by side again, on other batches
        for i in range(1, draws):
            if budget_s is not None and time.monotonic() - start > budget_s:
                break
            draws_measured = i + 1
            prepared = {}
            for s in alive:
                p, first = _prepare_warm(case(s, i))
                tick(f"draw {i + 1}/{draws} warm up {s}")
                if p is not None:
                    prepared[s] = p
            ti = interleaved(prepared, rounds, block_s, on_round=lambda: tick(f"draw {i + 1}/{draws} rounds"))
            for s, t in ti.items():
                if isinstance(t, list) and t:
                    times[s][i] = t
            del prepared
        phase("other_draws")
        tokens = {i: sum(lengths_for(source.distribution, source.batch_size, source.max_len, seeds[i], None))
                  for i in range(draws_measured)}
        flops = {(s, i): measure_mod.useful_flops(lengths_for(source.distribution, source.batch_size,
                                                              source.max_len, seeds[i], None), spec, mode)
                 for s in times for i in times[s]}
        # 4. memory: one fresh process per measured strategy (nothing is being timed now)
        if memory:
            todo = [s for s in finalists if records[s]["status"] == "ok"]
            bar.set_description("peak memory")

            def probe(s):
                try:
                    return s, measure_mod.peak_memory(case(s, 0).validate())
                except Exception as exc:  # noqa: BLE001 - memory is extra: keep the timings
                    return s, exc

            with ThreadPoolExecutor(max_workers=2 if device == "cpu" else 1) as pool:
                for s, peak in pool.map(probe, todo):
                    if isinstance(peak, Exception):
                        records[s]["message"] = (records[s].get("message") or "") + f" (memory probe failed: {peak})"
                    else:
                        records[s]["peak_mem_bytes"] = peak
                    bar.update(1)
            phase("memory")
    finally:
        bar.close()
    return {"records": records, "times": times, "tokens": tokens, "useful_flops": flops, "screen": screen,
            "finalists": finalists, "seeds": seeds[:draws_measured], "draws_measured": draws_measured,
            "batches": [_batch_info(source, seeds[i]) for i in range(draws_measured)], "phases_s": phases}


# ------------------------------------------------------------------------------- judging
def _tolerances(dtype: str | None) -> tuple[float, float]:
    try:
        from .report import FWD_TOL, GRAD_TOL
    except ImportError:  # pragma: no cover - report is optional here
        FWD_TOL, GRAD_TOL = {}, {}
    import inspect

    from .table import equivalent

    params = inspect.signature(equivalent).parameters
    name = str(dtype or "float32").replace("torch.", "")
    return FWD_TOL.get(name, params["fwd_tol"].default), GRAD_TOL.get(name, params["grad_tol"].default)


def _equivalent_frame(df):
    """`padbench.table.equivalent` with the tolerance of each row's dtype."""
    import pandas as pd

    from .table import equivalent

    if df.empty:
        return pd.Series([], dtype=bool)
    out = pd.Series(False, index=df.index)
    dtypes = df["dtype"] if "dtype" in df else pd.Series("float32", index=df.index)
    for dt, idx in df.groupby(dtypes.fillna("float32").astype(str)).groups.items():
        fwd, grad = _tolerances(dt)
        out.loc[idx] = equivalent(df.loc[idx], fwd_tol=fwd, grad_tol=grad)
    return out.astype(bool)


def _equivalent_record(rec: dict) -> bool:
    import pandas as pd

    return bool(_equivalent_frame(pd.DataFrame([rec])).iloc[0])


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _entry(strategy: str, **kw) -> dict:
    e = dict.fromkeys(ENTRY_KEYS)
    e.update(strategy=strategy, equivalent=None, status="error", message="", max_rel_err=None, grad_rel_err=None,
             draws=0, speedup_per_draw=[])
    e.update(kw)
    return e


def aggregate(measured: dict) -> list[dict]:
    """Ranked entries (see `rank`) from `measure`'s output.

    Per draw a strategy's time per batch is the median of its rounds. Its tokens/s (real tokens
    over time), efficiency and speedup (`padded`'s time over its own on the same batch) are the
    median over draws: a typical batch, robust to one odd batch or one noisy draw. Strategies
    are ranked by speedup.
    """
    records, times, tokens = measured["records"], measured["times"], measured["tokens"]
    screened = measured["screen"]
    med = {s: {i: float(np.median(t)) for i, t in per.items()} for s, per in times.items()}
    base = med.get(BASELINE, {})
    entries, seen = [], set()
    for s, rec in records.items():
        seen.add(s)
        if rec["status"] != "ok":
            entries.append(_entry(s, status=rec["status"], message=rec.get("message") or ""))
            continue
        eq = _equivalent_record(rec)
        mine = med.get(s, {})
        draws = sorted(mine)
        common = [i for i in draws if i in base]
        per_draw = [base[i] / mine[i] for i in common]
        sp = float(np.median(per_draw)) if per_draw else None
        matmul = _num(rec.get("matmul_flops"))
        tps = float(np.median([tokens[i] / mine[i] for i in draws])) if draws else None
        eff = float(np.median([measured["useful_flops"][(s, i)] / mine[i] / matmul for i in draws])) \
            if draws and matmul else None
        spread = [float((np.max(times[s][i]) - np.min(times[s][i])) / np.median(times[s][i])) for i in draws]
        entries.append(_entry(
            s, tokens_per_s=tps, speedup_vs_padded=sp, peak_mem_bytes=_num(rec.get("peak_mem_bytes")),
            efficiency=eff, equivalent=eq, status="ok" if eq else "not equivalent", message=rec.get("message") or "",
            max_rel_err=_num(rec.get("max_rel_err")), grad_rel_err=_num(rec.get("grad_rel_err")),
            draws=len(draws), time_s=float(np.median([mine[i] for i in draws])) if draws else None,
            speedup_per_draw=[round(x, 3) for x in per_draw],
            round_spread=round(max(spread), 3) if spread else None,
        ))
    # not measured further (screened out), unsupported and failing strategies: what the first draw saw
    base_entry = next((e for e in entries if e["strategy"] == BASELINE and e["status"] == "ok"), None)
    base_screen = screened.get(BASELINE, {}).get("time_s")
    fastest = min((r["time_s"] for r in screened.values() if r.get("status") == "ok" and r.get("timed")), default=None)
    for s, res in screened.items():
        if s in seen:
            continue
        if res.get("status") == "ok" and res.get("time_s"):
            sp = base_screen / res["time_s"] if base_screen and res.get("timed") else None
            if res.get("timed"):
                how = f"{res['time_s'] / fastest:.1f}x the fastest's time per batch on the first draw" if fastest \
                    else "slow on the first draw"
            else:
                how = f"its first batch alone took {res['time_s']:.2f} s, far longer than the others'"
                sp = base_screen / res["time_s"] if base_screen else None  # an upper bound on its speed
            entries.append(_entry(
                s, status="screened out",
                message=f"{how}; not measured further, numbers are rough (--no-screen measures it)",
                speedup_vs_padded=sp,
                # on the same scale as the measured rows: padded's measured rate x the screened ratio
                tokens_per_s=sp * base_entry["tokens_per_s"] if sp and base_entry else None,
            ))
        else:
            entries.append(_entry(s, status=res.get("status", "error"), message=res.get("message", "")))
    return rank(entries)


_STATUS_ORDER = {"ok": 0, "not equivalent": 0, "screened out": 1, "oom": 2, "error": 2, "unsupported": 3}


def rank(entries: list[dict]) -> list[dict]:
    """Measured strategies fastest first (by speedup over `padded`, by tokens/s where there is none),
    then screened-out, failed and unsupported ones."""
    def key(e):
        sp = e.get("speedup_vs_padded")
        return (_STATUS_ORDER.get(e["status"], 2), -(sp if sp is not None else -1.0), -(e["tokens_per_s"] or -1.0),
                e["strategy"])

    return sorted(entries, key=key)


def recommended(entries: list[dict]) -> dict | None:
    """The fastest measured strategy that computes the reference function (never a non-equivalent one)."""
    for e in rank(entries):
        if e["status"] == "ok" and e["equivalent"] is True and e["tokens_per_s"]:
            return e
    return None


def _err_text(e: dict, mode: str) -> str:
    parts = []
    if e.get("max_rel_err") is not None:
        parts.append(f"max rel err {e['max_rel_err']:.0e}")
    if mode == "training" and e.get("grad_rel_err") is not None:
        parts.append(f"grad rel err {e['grad_rel_err']:.0e}")
    return ", ".join(parts)


def machine_load() -> dict:
    """1-minute load average and CPU count: is something else running on this machine?"""
    import os

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


# ------------------------------------------------------------------------------- snippets
SNIPPETS = {
    "padded": """\
# keep what you have: pad to the batch max with a bool mask (True = pad)
out = encoder(x, src_key_padding_mask=mask)               # [B, L, d]; ignore pad positions
""",
    "bucketed": """\
# sort by length and pad only within buckets of similar length (better still: a
# length-grouped sampler in your DataLoader, so every batch is one bucket)
import torch
lengths = (~mask).sum(1)
out = torch.zeros_like(x)
for idx in torch.argsort(lengths).chunk(4):               # 4 buckets
    width = int(lengths[idx].max())
    out[idx, :width] = encoder(x[idx, :width], src_key_padding_mask=mask[idx, :width])
""",
    "nested_fastpath": """\
# nn.TransformerEncoder's nested-tensor fast path (inference only): build the encoder with
# enable_nested_tensor=True (the default; batch_first=True, norm_first=False, even nhead,
# relu/gelu), run it in eval mode without grad, and pass a bool src_key_padding_mask
import torch
encoder.eval()
with torch.no_grad():
    out = encoder(x, src_key_padding_mask=mask)           # [B, L, d]; pad positions come back as 0
""",
    "jagged": """\
# a jagged nested tensor (NJT) through Linear, LayerNorm and SDPA
from padbench.batch import VarlenBatch
from padbench.strategies import get
batch = VarlenBatch.from_padded(x, mask)                  # real tokens packed [T, d] + offsets
out = get("jagged", encoder)(batch)                       # [T, d], valid positions only
per_seq = out.split(batch.lengths_list)                   # one [L_i, d] tensor per sequence
""",
    "loop": """\
# one sequence at a time, no padding at all
import torch
lengths = (~mask).sum(1).tolist()
outs = [encoder(x[i : i + 1, :n])[0] for i, n in enumerate(lengths)]   # [L_i, d] each
out = torch.cat(outs)                                     # [T, d]
""",
    "packed": """\
# padbench's packed strategy: dense layers on the real tokens only, varlen attention over offsets
from padbench.batch import VarlenBatch
from padbench.strategies import get
packed = get("packed", encoder)                           # same weights as `encoder`
batch = VarlenBatch.from_padded(x, mask)                  # real tokens packed [T, d] + offsets
out = packed(batch)                                       # [T, d], valid positions only
per_seq = out.split(batch.lengths_list)                   # one [L_i, d] tensor per sequence
""",
    "flex": """\
# compiled FlexAttention with a document mask over the packed tokens; compilation is not in
# the timing and happens again for every new total token count T (pad T to a few sizes)
from padbench.batch import VarlenBatch
from padbench.strategies import get
batch = VarlenBatch.from_padded(x, mask)
out = get("flex", encoder)(batch)                         # [T, d], valid positions only
""",
    "varlen_attn": """\
# torch.nn.attention.varlen (FlashAttention varlen) over packed tokens: CUDA, fp16/bf16
from padbench.batch import VarlenBatch
from padbench.strategies import get
batch = VarlenBatch.from_padded(x, mask)                  # x on the GPU in float16/bfloat16
out = get("varlen_attn", encoder)(batch)                  # [T, d], valid positions only
""",
}


def snippet(strategy: str, mode: str = "inference") -> str:
    """How to adopt ``strategy``, given ``encoder``, ``x [B, L, d]`` and a bool ``mask [B, L]`` (True = pad)."""
    text = SNIPPETS.get(strategy, f"from padbench.strategies import get\nout = get({strategy!r}, encoder)(batch)\n")
    if mode == "training" and strategy not in ("padded", "nested_fastpath"):
        text += "# training: compute the loss on the valid outputs only, then loss.backward()\n"
    elif mode == "inference" and strategy not in ("nested_fastpath",):
        text = "# inference: run under torch.no_grad() (or torch.inference_mode())\n" + text
    return text


# ------------------------------------------------------------------------------- from results
MODEL_COLUMNS = {"d_model": "d_model", "nhead": "nhead", "dim_feedforward": "dim_feedforward",
                 "num_layers": "num_layers", "activation": "activation", "norm_first": "norm_first", "dtype": "dtype"}


def _model_match(df, spec):
    """Rows measured with ``spec``; a missing value (asv: the suite's default model) is the default."""
    import pandas as pd

    from .model import EncoderSpec

    want = spec.as_dict()
    default = EncoderSpec().as_dict()
    keep = pd.Series(True, index=df.index)
    for col in MODEL_COLUMNS:
        vals = df[col] if col in df else pd.Series(None, index=df.index, dtype=object)
        vals = vals.where(vals.notna(), default[col])
        if col == "dtype":
            vals = vals.astype(str).str.replace("torch.", "", regex=False)
        if col == "norm_first":
            vals = vals.map(lambda v: str(v).lower() in ("true", "1"))
        if col in ("d_model", "nhead", "dim_feedforward", "num_layers"):
            vals = pd.to_numeric(vals, errors="coerce")
        keep &= vals == want[col]
    return df[keep]


def _case_features(row) -> dict:
    """Padding ratio, mean length, batch max and CV of one measured case (from its record)."""
    from .runner import lengths_for

    pad = _num(row.get("padding_ratio"))
    bs = _num(row.get("batch_size"))
    tokens = _num(row.get("num_tokens"))
    feats = {"padding_ratio": pad, "batch_size": int(bs) if bs else None, "mean": None, "batch_max": None, "cv": None}
    if tokens and bs:
        feats["mean"] = tokens / bs
        if pad is not None and pad < 1:
            feats["batch_max"] = tokens / bs / (1 - pad)
    dist = str(row.get("distribution"))
    max_len = _num(row.get("max_len"))
    seed = _num(row.get("seed"))
    if bs and (dist in DISTRIBUTIONS or dist.startswith("file:")):
        try:  # the exact lengths are reproducible from (distribution, batch, max_len, seed)
            lens = np.asarray(lengths_for(dist, int(bs), int(max_len) if max_len else None, int(seed or 0)), float)
            if tokens and int(lens.sum()) != int(tokens):
                raise ValueError("the distribution draws other lengths now than when this case was measured")
            feats["cv"] = float(lens.std() / lens.mean())
            feats["mean"] = feats["mean"] or float(lens.mean())
            feats["batch_max"] = feats["batch_max"] or float(lens.max())
            if feats["padding_ratio"] is None:
                feats["padding_ratio"] = padding_ratio(lens)
        except (PadbenchError, OSError, ValueError):
            pass
    return feats


def distance(user: dict, case: dict) -> float:
    """How unlike the user's batches a measured case is (0 = alike; ~1 per notable difference).

    One unit each: 0.05 of padding ratio, a factor 1.5 in mean length, a factor 2 in batch size,
    0.25 of coefficient of variation.
    """
    d = 0.0
    if case["padding_ratio"] is None:
        d += 10.0
    else:
        d += abs(user["padding_ratio"] - case["padding_ratio"]) / 0.05
    if case.get("mean") and user.get("mean"):
        d += abs(math.log(user["mean"] / case["mean"])) / math.log(1.5)
    if case.get("batch_size") and user.get("batch_size"):
        d += abs(math.log(user["batch_size"] / case["batch_size"])) / math.log(2.0)
    if case.get("cv") is not None and user.get("cv") is not None:
        d += abs(user["cv"] - case["cv"]) / 0.25
    return d


def from_results(path: str, source: LengthSource, *, device: str, mode: str, spec, strategies=None) -> dict:
    """Rank strategies from the measured case nearest to the user's lengths."""
    import pandas as pd

    from .report import load

    df = load([path])
    spec_text = (f"d_model {spec.d_model}, nhead {spec.nhead}, ff {spec.dim_feedforward}, layers {spec.num_layers}, "
                 f"{spec.activation}{', norm_first' if spec.norm_first else ''}, {spec.as_dict()['dtype']}")
    same = df[(df["device"] == device) & (df["mode"] == mode)]
    same = _model_match(same, spec) if len(same) else same
    if same.empty:
        have = sorted({f"{r.device} {r.mode}" for r in df[["device", "mode"]].itertuples()})
        raise PadbenchError(f"no results in {path} for {device} {mode} with model ({spec_text}); "
                            f"it holds {', '.join(have) or 'nothing usable'} (check --d-model/--nhead/--ff/--layers/"
                            "--dtype, or drop --from-results to measure)")
    same = same.copy()
    for col in ("batch_size", "max_len"):
        same[f"_{col}"] = pd.to_numeric(same[col], errors="coerce").fillna(-1)
    keys = ["run", "distribution", "_batch_size", "_max_len"]
    user = {**source.summary, "batch_size": source.batch_size}
    best = None
    for key, g in same.groupby(keys, sort=False, dropna=False):
        rows = g[g["padding_ratio"].notna()] if g["padding_ratio"].notna().any() else g
        feats = _case_features(rows.iloc[0].to_dict())
        dist = distance(user, feats)
        when = pd.to_datetime(g["run_time"], utc=True, errors="coerce").max() if "run_time" in g else None
        cand = (dist, -(when.value if when is not None and not pd.isna(when) else 0), key, g, feats)
        if best is None or cand[:2] < best[:2]:
            best = cand
    dist, _, key, g, feats = best
    g = g.drop_duplicates("strategy", keep="last").copy()  # one row per strategy (the latest)
    if strategies:
        g = g[g["strategy"].isin(set(strategies) | {BASELINE})]
    g["equivalent"] = _equivalent_frame(g).values
    base = g[(g["strategy"] == BASELINE) & (g["status"] == "ok")]
    base_tps = _num(base["tokens_per_s"].iloc[0]) if len(base) else None
    entries = []
    for r in g.to_dict("records"):
        tps = _num(r.get("tokens_per_s"))
        sp = _num(r.get("speedup"))  # asv measured it side by side in one process: prefer it
        if sp is None and tps and base_tps:
            sp = tps / base_tps
        status = r.get("status") or "error"
        if status == "ok" and not r["equivalent"]:
            status = "not equivalent"
        entries.append(_entry(
            r["strategy"], tokens_per_s=tps, speedup_vs_padded=sp if status in ("ok", "not equivalent") else None,
            peak_mem_bytes=_num(r.get("peak_mem_bytes")), efficiency=_num(r.get("efficiency")),
            equivalent=bool(r["equivalent"]) if r.get("status") == "ok" else None, status=status,
            message=str(r.get("message") or ""), max_rel_err=_num(r.get("max_rel_err")),
            grad_rel_err=_num(r.get("grad_rel_err")), draws=1 if r.get("status") == "ok" else 0,
        ))
    run, distribution, bs, ml = key
    nearest = {
        "run": str(run), "distribution": str(distribution), "batch_size": int(bs) if bs >= 0 else None,
        "max_len": int(ml) if ml >= 0 else None, "padding_ratio": feats["padding_ratio"], "mean": feats["mean"],
        "batch_max": feats["batch_max"], "cv": feats["cv"], "distance": dist,
    }
    return {"entries": rank(entries), "nearest": nearest}


def nearest_text(nearest: dict, source: LengthSource) -> str:
    s = source.summary
    parts = [f"nearest measured case: {nearest['distribution']} ({nearest['run']})"]
    if nearest["padding_ratio"] is not None:
        parts.append(f"padding ratio {nearest['padding_ratio']:.2f} vs yours {s['padding_ratio']:.2f}")
    if nearest["max_len"] is not None:
        parts.append(f"max_len {nearest['max_len']} vs {s['max']}")
    if nearest["mean"] is not None:
        parts.append(f"mean length {nearest['mean']:.0f} vs {s['mean']:.0f}")
    if nearest["batch_size"] is not None:
        parts.append(f"batch {nearest['batch_size']} vs {source.batch_size}")
    text = ", ".join(parts)
    if nearest["distance"] > 3:
        text += (" -- far from your lengths: the ranking may not carry over; drop --from-results to measure "
                 "on your own lengths")
    return text


# ------------------------------------------------------------------------------- output
def _fmt(v, kind):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if kind == "tps":
        return f"{v:,.0f}"
    if kind == "x":
        return f"{v:.2f}x"
    if kind == "mb":
        return f"{v / 2**20:.1f}"
    if kind == "eff":
        return f"{v:.3f}"
    if kind == "err":
        return f"{v:.1e}"
    return str(v)


def table_text(entries: list[dict], mode: str) -> str:
    import pandas as pd

    rows = []
    for i, e in enumerate(entries, 1):
        eq = {True: "yes", False: "NO", None: ""}[e["equivalent"]]
        rows.append({
            "#": i if e["status"] in ("ok", "not equivalent") else "",
            "strategy": e["strategy"],
            "real tokens/s": _fmt(e["tokens_per_s"], "tps"),
            "vs padded": _fmt(e["speedup_vs_padded"], "x"),
            "peak MB": _fmt(e["peak_mem_bytes"], "mb"),
            "efficiency": _fmt(e["efficiency"], "eff"),
            "rel err": _fmt(e.get("max_rel_err"), "err"),
            **({"grad err": _fmt(e.get("grad_rel_err"), "err")} if mode == "training" else {}),
            "equivalent": eq,
            "status": e["status"] if e["status"] != "ok" else "ok",
        })
    df = pd.DataFrame(rows)
    text = df.to_string(index=False)
    notes = [f"  {e['strategy']}: {e['message'].strip()}" for e in entries
             if e["message"] and e["status"] != "ok"]
    if notes:
        text += "\n" + "\n".join(notes)
    return text


def _json_clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating,)):
        return _json_clean(float(v))
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, dict):
        return {k: _json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_clean(x) for x in v]
    return v


def result_document(source: LengthSource, entries: list[dict], *, device: str, mode: str, verdict_text: str,
                    spec, nearest: dict | None = None, draws: int | None = None, cut: bool = False,
                    batches: list | None = None, phases: dict | None = None, load: dict | None = None) -> dict:
    s = source.summary
    best = recommended(entries)
    doc = {
        "device": device,
        "mode": mode,
        "lengths": {"count": s["count"], "mean": s["mean"], "max": s["max"], "padding_ratio": s["padding_ratio"],
                    "source": s["source"], "batch_size": source.batch_size, "cv": s["cv"],
                    "expected_batch_max": s["expected_batch_max"]},
        "model": spec.as_dict(),
        "ranked": [{k: e.get(k) for k in (*ENTRY_KEYS, "max_rel_err", "grad_rel_err", "message", "draws",
                                           "speedup_per_draw", "round_spread")} for e in entries],
        "recommended": best["strategy"] if best else None,
        "verdict": verdict_text,
        "measured": nearest is None,
    }
    if draws is not None:
        doc["draws"] = draws
        doc["time_budget_reached"] = cut
        doc["batches"] = batches
        doc["phases_s"] = phases
        doc["machine_load"] = load
    if nearest is not None:
        doc["nearest"] = nearest
    return _json_clean(doc)
