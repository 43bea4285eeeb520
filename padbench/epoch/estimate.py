"""How long one epoch takes, per (policy, strategy): timed batches, a fitted cost model, an interval.

Every pair runs as a `runner.Case` whose batch lengths are the epoch's (any ``--model``, the
same step, warm-up, equivalence and memory probe as `padbench run`). Three phases. Prepare
every pair: check the strategy can run here, warm it up on a representative batch (the sampled
batch of median work; `runner.warm_up`, which also proves the nested fast path) and check its
equivalence there (`equivalence.check`, judged by `judge.judge`). Time the batches of every
pair **round-robin** (one batch of each pair in turn), so that a machine whose load drifts over
the run slows every pair alike and the ratios between rows stay fair; each pair times a
stratified sample of its epoch (every batch with ``measure_all``) with the one timer
`measure.time_fn`. A pair that is slow to time and clearly out of the race (after
`CUTOFF_AFTER` batches, its epoch over `CUTOFF` times the shortest one's so far and the rest of
its sample over `CUTOFF_REMAINING_S`) stops timing early: its row keeps an estimate from what it
timed, with the wider interval that gives, and says so. Finish: predict the
untimed batches (`costmodel`) and probe the peak memory of the largest batch
(`runner.peak_memory`). A Ctrl-C keeps what was timed: every unfinished pair's row is marked
``interrupted`` and estimated from its batches so far.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from .. import equivalence, measure, models
from ..errors import failure
from ..judge import judge
from ..model import EncoderSpec, dtype_name
from ..runner import Case, Prepared, peak_memory, prepare, warm_up
from . import costmodel
from .policies import Epoch, build_epoch, strategies_for

CUTOFF = 4.0  # a pair over this many times the shortest epoch so far stops timing early...
CUTOFF_AFTER = 3  # ...once it has timed this many batches (never with measure_all)...
CUTOFF_REMAINING_S = 30.0  # ...if the rest of its sample would take longer than this


@dataclass(frozen=True)
class EpochConfig:
    device: str = "cpu"
    mode: str = "inference"
    spec: EncoderSpec = EncoderSpec()  # a spec model's sizes; every model's dtype
    model: str = "spec"  # spec | MODULE:CALLABLE | hf:SOURCE, as `runner.Case`
    hf_config: str = ""
    seed: int = 0
    batch_size: int = 32
    max_tokens: int = 8192
    row_len: int = 512
    measure_all: bool = False
    sample: int | None = None  # batches timed per pair (None: costmodel.sample_size)
    memory: bool = True
    cutoff: bool = True  # stop timing a pair that is out of the race (see CUTOFF)
    # A batch of 50 ms or more is timed once, as the epoch runs it; a faster one by a short loop.
    min_run_time: float = 0.05
    max_run_time: float = 0.15


def base_row(epoch: Epoch, strategy: str, cfg: EpochConfig) -> dict:
    return {
        "policy": epoch.policy, "strategy": strategy, "status": "pending", "message": "",
        "steps": len(epoch.batches), "sequences": int(sum(len(b.lengths) for b in epoch.batches)),
        "real_tokens": epoch.real_tokens, "padded_tokens": epoch.padded_tokens,
        "padding_fraction": epoch.padding_fraction, "shape": epoch.shape, "shuffled": epoch.shuffled,
        "epoch_s": None, "epoch_s_low": None, "epoch_s_high": None, "tokens_per_s": None,
        "measured_batches": 0, "estimated": not cfg.measure_all, "sample_estimate_s": None,
        "peak_mem_bytes": None, "equivalent": None, "why_not": None, "max_rel_err": None, "grad_rel_err": None,
        "pad_invariant": None, "nan_free": None, "prepare_s": None, "fastpath_taken": None,
        "device": cfg.device, "mode": cfg.mode, "dtype": dtype_name(cfg.spec.dtype), "batch_size": cfg.batch_size,
        "max_tokens": cfg.max_tokens, "row_len": cfg.row_len,
        **models.describe(cfg.model, cfg.hf_config, cfg.spec, cfg.seed).fields(),  # whose epoch this is
    }


@dataclass
class Pair:
    """One (policy, strategy): its row, and what timing it needs."""

    epoch: Epoch
    name: str
    row: dict
    x: np.ndarray  # cost-model features of every batch
    sample: np.ndarray  # the default stratified sample
    timed: np.ndarray  # the batches to time, in the order they are timed
    run: Prepared | None = None
    measured: dict = field(default_factory=dict)
    cut: bool = False  # stopped timing early: out of the race


def plan(epoch: Epoch, name: str, cfg: EpochConfig) -> Pair:
    x = costmodel.features(epoch)
    sample = costmodel.stratified_sample(x, cfg.sample or costmodel.sample_size(len(x)), cfg.seed)
    timed = np.arange(len(x)) if cfg.measure_all else sample
    # A random order: an interrupted pair has timed a spread of its batches, not the smallest.
    timed = np.random.default_rng(cfg.seed).permutation(timed)
    return Pair(epoch, name, base_row(epoch, name, cfg), x, sample, timed)


def batch_lengths(pair: Pair, index: int) -> tuple[int, ...]:
    return tuple(int(n) for n in pair.epoch.batches[index].lengths)


def epoch_batch(pair: Pair, cfg: EpochConfig, index: int):
    """Batch ``index`` of the pair's epoch, as the pair's model builds it (seeded by its index)."""
    return pair.run.model.batch(batch_lengths(pair, index), cfg.seed + index)


def case_for(pair: Pair, cfg: EpochConfig, index: int) -> Case:
    """The `runner.Case` of batch ``index`` of the pair's epoch."""
    lengths = batch_lengths(pair, index)
    return Case(strategy=pair.name, distribution=f"epoch:{pair.epoch.policy}", device=cfg.device, mode=cfg.mode,
                batch_size=len(lengths), spec=cfg.spec, seed=cfg.seed, model=cfg.model, hf_config=cfg.hf_config,
                lengths=lengths, row_len=pair.epoch.row_len if pair.epoch.shape == "rows" else None)


def representative(pair: Pair) -> int:
    """The sampled batch of median work: the one equivalence is checked and warm-up runs on."""
    x, sample = pair.x, pair.sample
    work = x[sample, 3] / max(float(x[:, 3].mean()), 1.0) + x[sample, 5] / max(float(x[:, 5].mean()), 1.0)
    return int(sample[np.argsort(work, kind="stable")[len(sample) // 2]])


def largest_batch(pair: Pair) -> int:
    """The epoch's largest batch: most padded tokens, then most attention work."""
    return int(np.lexsort((pair.x[:, 5], pair.x[:, 3]))[-1])


def prepare_pair(pair: Pair, cfg: EpochConfig) -> None:
    """Support, warm-up and equivalence; a failure is recorded in the row (``run`` stays None).

    The pairs of one policy share the representative batch (the same cached batch object), so
    its float64 reference is computed once.
    """
    row = pair.row
    try:
        run = pair.run = prepare(case_for(pair, cfg, representative(pair)))
        warm = warm_up(run)
        row["prepare_s"], row["fastpath_taken"] = warm["prepare_s"], warm.get("fastpath_taken")
        # Once, untimed, the epoch's largest batch: the allocator has then seen the biggest buffers
        # (glibc serves them from its heap afterwards instead of fresh, page-faulting mmaps), so a
        # batch's time does not depend on which batches the process happened to run before it.
        run.run(epoch_batch(pair, cfg, largest_batch(pair)))
        eq = equivalence.check(run)
        row.update({k: eq[k] for k in ("max_rel_err", "grad_rel_err", "pad_invariant", "nan_free")})
        row["equivalent"], row["why_not"] = judge({**eq, "status": "ok", "mode": cfg.mode, "dtype": row["dtype"]})
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # recorded: the other pairs still run
        pair.run = None
        row.update(failure(exc))


def time_batch(run: Prepared, batch, cfg: EpochConfig) -> float:
    """Seconds one batch takes: one run if it is slow, else the median of a short loop (`measure.time_fn`)."""
    return measure.time_fn(lambda: run.run(batch), cfg.device, min_run_time=cfg.min_run_time,
                           max_run_time=cfg.max_run_time, slow_runs=1)[0]


def mean_batch_s(pair: Pair) -> float:
    """The mean time of the batches timed so far (a random order of a stratified sample): rough,
    but enough to tell a pair several times slower than another."""
    return float(np.mean(list(pair.measured.values())))


def cut_losers(live: list[Pair], cfg: EpochConfig) -> None:
    """Stop timing the pairs whose epoch is over `CUTOFF` times the shortest so far and whose
    remaining sample would cost more than `CUTOFF_REMAINING_S`: a cheap pair (the baseline
    among them) is always timed in full, since its estimate is what the others are compared to."""
    ready = [p for p in live if p.run is not None and len(p.measured) >= CUTOFF_AFTER]
    if not cfg.cutoff or cfg.measure_all or len(ready) < 2:
        return
    epoch_s = {id(p): mean_batch_s(p) * len(p.x) for p in ready}
    best = min(epoch_s.values())
    for p in ready:
        remaining_s = mean_batch_s(p) * (len(p.timed) - len(p.measured))
        if epoch_s[id(p)] > CUTOFF * best and remaining_s > CUTOFF_REMAINING_S:
            p.cut = True
            p.timed = p.timed[: len(p.measured)]


def time_round_robin(pairs: list[Pair], cfg: EpochConfig, progress=None, on_round=None) -> None:
    """Time every runnable pair's batches, one batch of each pair in turn; ``on_round()`` after each round."""
    live = [p for p in pairs if p.run is not None]
    k = 0
    while any(k < len(p.timed) and p.run is not None for p in live):
        for p in live:
            if k >= len(p.timed) or p.run is None:
                continue
            i = int(p.timed[k])
            try:
                p.measured[i] = time_batch(p.run, epoch_batch(p, cfg, i), cfg)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # this pair stops; the others go on
                p.row.update(failure(exc))
                p.run = None
            if progress is not None:
                progress.set_description(f"{p.epoch.policy} {p.name}")
                progress.update(1)
        k += 1
        if on_round is not None:
            on_round()
        before = sum(len(p.timed) for p in live)
        cut_losers(live, cfg)
        dropped = before - sum(len(p.timed) for p in live)
        if progress is not None and dropped:
            progress.total -= dropped
            progress.refresh()


def fill_estimate(pair: Pair, cfg: EpochConfig, *, bootstrap: int = costmodel.BOOTSTRAP) -> None:
    """The row's estimate from the batches timed so far (``bootstrap=0``: the point estimate, no interval)."""
    row, measured = pair.row, pair.measured
    if not measured:
        return
    row["measured_batches"] = len(measured)
    row["epoch_s"], row["epoch_s_low"], row["epoch_s_high"] = costmodel.estimate(pair.x, measured, seed=cfg.seed,
                                                                                 bootstrap=bootstrap)
    row["tokens_per_s"] = row["real_tokens"] / row["epoch_s"] if row["epoch_s"] else None
    if pair.cut:
        row["message"] = (f"timed {len(measured)} batches, then stopped: its epoch is over {CUTOFF:g}x the "
                          f"shortest one's (--no-cutoff times its whole sample)")
    if cfg.measure_all and len(measured) == len(pair.x):
        # What the default sample alone would have estimated, from the same timings.
        part = {int(i): measured[int(i)] for i in pair.sample}
        row["sample_estimate_s"] = costmodel.estimate(pair.x, part, seed=cfg.seed, bootstrap=0)[0]


def finish_pair(pair: Pair, cfg: EpochConfig) -> None:
    if pair.run is None:
        return
    try:
        fill_estimate(pair, cfg)
        if cfg.memory:
            pair.row["peak_mem_bytes"] = peak_memory(case_for(pair, cfg, largest_batch(pair)))
        pair.row["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        pair.row.update(failure(exc))


def measure_epochs(lengths, policies, strategies, cfg: EpochConfig, *, progress: bool = True,
                   on_row=None) -> list[dict]:
    """Every (policy, strategy that runs it) row, in that order. After a Ctrl-C the rows of the
    unfinished pairs are marked ``interrupted``, with what they had timed."""
    from tqdm import tqdm

    epochs = [build_epoch(p, lengths, batch_size=cfg.batch_size, max_tokens=cfg.max_tokens, row_len=cfg.row_len,
                          seed=cfg.seed) for p in policies]
    pairs = [plan(e, s, cfg) for e in epochs for s in strategies_for(e.policy, strategies)]
    rows = [p.row for p in pairs]
    finished: set[int] = set()
    bar = None
    try:
        for p in tqdm(pairs, desc="warm-up and equivalence", unit="pair", file=sys.stderr, disable=not progress):
            prepare_pair(p, cfg)
            if p.run is None:
                finished.add(id(p))
        bar = tqdm(total=sum(len(p.timed) for p in pairs if p.run is not None), unit="batch", file=sys.stderr,
                   disable=not progress)

        def keep_timed():
            # A run killed mid-timing (a crash, a kill) still leaves what each pair had timed in the
            # results file: pending rows with their batches so far and the estimate they give.
            if on_row is not None:
                for p in pairs:
                    if p.run is not None:
                        fill_estimate(p, cfg, bootstrap=0)
                on_row(rows)

        time_round_robin(pairs, cfg, bar, keep_timed)
        for p in pairs:
            finish_pair(p, cfg)
            finished.add(id(p))
            if on_row is not None:
                on_row(rows)
    except KeyboardInterrupt:
        for p in pairs:
            if id(p) not in finished:
                fill_estimate(p, cfg)
                timed = f"{len(p.measured)} of {len(p.timed)} batches"
                p.row.update(status="interrupted", message=f"interrupted after {timed}")
        if on_row is not None:
            on_row(rows)
    finally:
        if bar is not None:
            bar.close()
    return rows
