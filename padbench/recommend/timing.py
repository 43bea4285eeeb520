"""Timing strategies side by side: warm-up, then interleaved rounds of timed blocks.

``padbench run`` times one case at a time with `padbench.measure.time_fn` (an adaptive run of
one strategy until its median is stable). That is right for a table of absolute numbers, but
not for deciding between strategies on a machine that other processes also use: load comes in
bursts of seconds, and a burst that hits one strategy's whole timing run and not the next one's
flips the ranking (on a busy 2-core CPU we saw `packed` go from 37 ms to 750 ms a batch while
`padded` went from 200 ms to 500 ms). So `recommend` times in *interleaved rounds*: each round
times one block of every strategy in turn, so whatever load there is hits all of them alike
within a round, and a strategy's time on a draw is its median round (a round hit by a burst does
not move it). Rounds also let the screen stop timing a clearly slow strategy after any round,
which one adaptive run per strategy cannot.

Nothing here is a second timer beside `padbench.measure`: a block is one span on the wall clock
around back-to-back `Prepared.step` calls, bracketed by `padbench.measure.synchronize` (each step
synchronizes too, as `time_fn`'s timed call does). Only steady batches are timed:
`prepare_warm` runs `padbench.runner.warm_up` first, the preparation every case goes through,
which absorbs every one-time cost (a kernel build, ``torch.compile``, autotuning) in a batch
that is never timed, and reports it as ``prepare_s``.
"""

from __future__ import annotations

import math

from .. import measure
from ..errors import failure
from ..runner import Case, Prepared, prepare, warm_up

# A block repeats a batch for at least BLOCK_S seconds (at most MAX_BLOCK_BATCHES batches).
BLOCK_S = 0.2
MAX_BLOCK_BATCHES = 200
# Rounds on the first draw (which also screens) and on the other draws.
SCREEN_ROUNDS = 4
ROUNDS = 3
# --quick: one draw, fewer and shorter blocks.
QUICK = {"draws": 1, "screen_rounds": 3, "rounds": 3, "block_s": 0.05}


def prepare_warm(case: Case) -> tuple[Prepared | None, dict]:
    """(Prepared, `warm_up`'s facts) after the preparation batch, or (None, {status, message}).

    The facts: ``prepare_s`` (one-time cost), ``first_batch_s`` (a steady batch). A strategy that
    cannot run here (or whose nested fast path fell back) is ``unsupported``; one that fails is
    reported, never raised.
    """
    try:
        prepared = prepare(case)
        return prepared, warm_up(prepared)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - reported by the caller
        return None, failure(exc)


def block_batches(batch_s: float, block_s: float) -> int:
    """Batches in one block: enough to last ``block_s`` at ``batch_s`` a batch (1 .. MAX_BLOCK_BATCHES)."""
    return max(1, min(MAX_BLOCK_BATCHES, math.ceil(block_s / max(batch_s, 1e-9))))


def time_block(prepared: Prepared, batches: int) -> float:
    """Seconds per batch over one block of ``batches`` back-to-back steady batches (one span)."""
    return measure.time_block(prepared.step, batches, prepared.case.device)


def interleaved(prepared: dict, rounds: int, block_s: float, *, batch_s: dict, keep=(), drop: float | None = None,
                on_round=None) -> dict:
    """Time ``prepared`` (strategy -> warmed-up `Prepared`) in interleaved rounds: strategy -> [s per batch].

    Every round times one block of each strategy in turn (module docstring). A block lasts about
    ``block_s``: its number of batches comes from ``batch_s`` (strategy -> a steady batch's
    seconds, `warm_up`'s ``first_batch_s``). With ``drop``, a strategy slower than ``drop`` x the
    fastest (by its fastest round so far) is not timed again (``keep``: never dropped). A strategy
    that fails gets its failure record (`padbench.errors.failure`) instead of a list.
    """
    times = {s: [] for s in prepared}
    alive = dict(prepared)
    sizes = {s: block_batches(batch_s[s], block_s) for s in prepared}
    for _ in range(rounds):
        for s, p in list(alive.items()):
            try:
                times[s].append(time_block(p, sizes[s]))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - reported by the caller
                times[s] = failure(exc)
                del alive[s]
        if drop:
            best = min((min(times[s]) for s in alive), default=None)
            for s in list(alive):
                if s not in keep and best and min(times[s]) > drop * best:
                    del alive[s]
        if on_round:
            on_round()
    return times
