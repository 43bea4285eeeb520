"""How long one epoch takes, per (policy, strategy): timed batches, a fitted cost model, an interval.

Three phases. Prepare every pair: check the strategy can run here, warm it up on a
representative batch (the sampled batch of median work; `runner.warm_up`, which also proves the
nested fast path) and check its equivalence there (`equivalence.check`, judged by
`judge.judge`). Time the batches of every pair **round-robin** (one batch of each pair in
turn), so that a machine whose load drifts over the run slows every pair alike and the ratios
between rows stay fair; each pair times a stratified sample of its epoch (every batch with
``measure_all``) with the one timer `measure.time_fn`. Finish: predict the untimed batches
(`costmodel`) and probe the peak memory of the largest batch (`padbench.epoch.memprobe`, a
fresh process on CPU, in process on CUDA, where the counter is exact). A Ctrl-C keeps what was
timed: every unfinished pair's row is marked ``interrupted`` and estimated from its batches so far.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import equivalence, measure
from ..batch import VarlenBatch
from ..errors import failure
from ..judge import judge
from ..model import EncoderSpec, dtype_name
from ..runner import warm_up
from ..strategies import strategy_class
from . import costmodel
from .batchrun import BatchRun, make_batch, make_strategy
from .policies import Epoch, build_epoch, strategies_for


@dataclass(frozen=True)
class EpochConfig:
    device: str = "cpu"
    mode: str = "inference"
    spec: EncoderSpec = EncoderSpec()
    seed: int = 0
    batch_size: int = 32
    max_tokens: int = 8192
    row_len: int = 512
    measure_all: bool = False
    sample: int | None = None  # batches timed per pair (None: costmodel.sample_size)
    memory: bool = True
    min_run_time: float = 0.1
    max_run_time: float = 0.5


def base_row(epoch: Epoch, strategy: str, cfg: EpochConfig) -> dict:
    return {
        "policy": epoch.policy, "strategy": strategy, "status": "error", "message": "",
        "steps": len(epoch.batches), "sequences": int(sum(len(b.lengths) for b in epoch.batches)),
        "real_tokens": epoch.real_tokens, "padded_tokens": epoch.padded_tokens,
        "padding_fraction": epoch.padding_fraction, "shape": epoch.shape, "shuffled": epoch.shuffled,
        "epoch_s": None, "epoch_s_low": None, "epoch_s_high": None, "tokens_per_s": None,
        "measured_batches": 0, "estimated": not cfg.measure_all, "sample_estimate_s": None,
        "peak_mem_bytes": None, "equivalent": None, "why_not": None, "max_rel_err": None, "grad_rel_err": None,
        "pad_invariant": None, "nan_free": None, "prepare_s": None, "fastpath_taken": None,
        "device": cfg.device, "mode": cfg.mode, "dtype": dtype_name(cfg.spec.dtype), "batch_size": cfg.batch_size,
        "max_tokens": cfg.max_tokens, "row_len": cfg.row_len,
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
    run: BatchRun | None = None
    measured: dict = field(default_factory=dict)


def plan(epoch: Epoch, name: str, cfg: EpochConfig) -> Pair:
    x = costmodel.features(epoch)
    sample = costmodel.stratified_sample(x, cfg.sample or costmodel.sample_size(len(x)), cfg.seed)
    timed = np.arange(len(x)) if cfg.measure_all else sample
    # A random order: an interrupted pair has timed a spread of its batches, not the smallest.
    timed = np.random.default_rng(cfg.seed).permutation(timed)
    return Pair(epoch, name, base_row(epoch, name, cfg), x, sample, timed)


def representative(pair: Pair, cfg: EpochConfig) -> VarlenBatch:
    """The sampled batch of median work: the one equivalence is checked and warm-up runs on."""
    x, sample = pair.x, pair.sample
    work = x[sample, 3] / max(float(x[:, 3].mean()), 1.0) + x[sample, 5] / max(float(x[:, 5].mean()), 1.0)
    i = int(sample[np.argsort(work, kind="stable")[len(sample) // 2]])
    return make_batch(pair.epoch.batches[i].lengths, cfg.spec, cfg.device, cfg.seed + i)


def prepare_pair(pair: Pair, cfg: EpochConfig, encoder, reference_batch: VarlenBatch) -> None:
    """Support, warm-up and equivalence; a failure is recorded in the row (``run`` stays None)."""
    row = pair.row
    try:
        strategy_class(pair.name).check(cfg.device, cfg.mode, cfg.spec.dtype)
        strategy = make_strategy(pair.name, encoder, pair.epoch.row_len if pair.epoch.shape == "rows" else None)
        run = BatchRun(cfg.mode, cfg.device, encoder, strategy, reference_batch)
        warm = warm_up(run)
        row["prepare_s"], row["fastpath_taken"] = warm["prepare_s"], warm.get("fastpath_taken")
        eq = equivalence.check(run)
        row.update({k: eq[k] for k in ("max_rel_err", "grad_rel_err", "pad_invariant", "nan_free")})
        row["equivalent"], row["why_not"] = judge({**eq, "status": "ok", "mode": cfg.mode, "dtype": row["dtype"]})
        pair.run = run
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # recorded: the other pairs still run
        row.update(failure(exc))


def time_batch(run: BatchRun, batch: VarlenBatch, cfg: EpochConfig) -> float:
    """Seconds one batch takes: the median of `measure.time_fn`'s short adaptive loop."""
    return measure.time_fn(lambda: run.run(batch), cfg.device, min_run_time=cfg.min_run_time,
                           max_run_time=cfg.max_run_time)[0]


def time_round_robin(pairs: list[Pair], cfg: EpochConfig, progress=None) -> None:
    """Time every runnable pair's batches, one batch of each pair in turn."""
    live = [p for p in pairs if p.run is not None]
    for k in range(max((len(p.timed) for p in live), default=0)):
        for p in live:
            if k >= len(p.timed) or p.run is None:
                continue
            i = int(p.timed[k])
            batch = make_batch(p.epoch.batches[i].lengths, cfg.spec, cfg.device, cfg.seed + i)
            try:
                p.measured[i] = time_batch(p.run, batch, cfg)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # this pair stops; the others go on
                p.row.update(failure(exc))
                p.run = None
            if progress is not None:
                progress.set_description(f"{p.epoch.policy} {p.name}")
                progress.update(1)


def fill_estimate(pair: Pair, cfg: EpochConfig) -> None:
    row, measured = pair.row, pair.measured
    if not measured:
        return
    row["measured_batches"] = len(measured)
    row["epoch_s"], row["epoch_s_low"], row["epoch_s_high"] = costmodel.estimate(pair.x, measured, seed=cfg.seed)
    row["tokens_per_s"] = row["real_tokens"] / row["epoch_s"] if row["epoch_s"] else None
    if cfg.measure_all and len(measured) == len(pair.x):
        # What the default sample alone would have estimated, from the same timings.
        part = {int(i): measured[int(i)] for i in pair.sample}
        row["sample_estimate_s"] = costmodel.estimate(pair.x, part, seed=cfg.seed)[0]


def finish_pair(pair: Pair, cfg: EpochConfig) -> None:
    if pair.run is None:
        return
    try:
        fill_estimate(pair, cfg)
        if cfg.memory:
            pair.row["peak_mem_bytes"] = peak_memory(pair, cfg)
        pair.row["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        pair.row.update(failure(exc))


def peak_memory(pair: Pair, cfg: EpochConfig, *, timeout: float = 600.0) -> int | None:
    """Peak memory of the epoch's largest batch (most padded tokens, then most attention work)
    above what was resident before it: `runner.peak_memory`'s rule, on explicit lengths."""
    index = int(np.lexsort((pair.x[:, 5], pair.x[:, 3]))[-1])
    epoch = pair.epoch
    job = {"strategy": pair.name, "device": cfg.device, "mode": cfg.mode, "spec": cfg.spec.as_dict(), "seed": cfg.seed,
           "lengths": [int(n) for n in epoch.batches[index].lengths], "batch_seed": cfg.seed + index,
           "row_len": epoch.row_len if epoch.shape == "rows" else None}
    if cfg.device == "cuda":
        from .memprobe import probe

        return probe(job, warm=True)
    if not measure.cpu_peak_supported():
        return None
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.run([sys.executable, "-m", "padbench.epoch.memprobe", json.dumps(job)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"memory probe failed: {tail}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_mem_bytes"])


def measure_epochs(lengths, policies, strategies, cfg: EpochConfig, *, progress: bool = True,
                   on_row=None) -> list[dict]:
    """Every (policy, strategy that runs it) row, in that order. After a Ctrl-C the rows of the
    unfinished pairs are marked ``interrupted``, with what they had timed."""
    from tqdm import tqdm

    encoder = cfg.spec.build(cfg.seed, cfg.device)
    epochs = [build_epoch(p, lengths, batch_size=cfg.batch_size, max_tokens=cfg.max_tokens, row_len=cfg.row_len,
                          seed=cfg.seed) for p in policies]
    pairs = [plan(e, s, cfg) for e in epochs for s in strategies_for(e.policy, strategies)]
    rows = [p.row for p in pairs]
    finished: set[int] = set()
    bar = None
    try:
        reference: dict[str, VarlenBatch] = {}
        for p in tqdm(pairs, desc="warm-up and equivalence", unit="pair", file=sys.stderr, disable=not progress):
            # One representative batch per policy: its float64 reference is computed once.
            ref = reference.setdefault(p.epoch.policy, representative(p, cfg))
            prepare_pair(p, cfg, encoder, ref)
            if p.run is None:
                finished.add(id(p))
        bar = tqdm(total=sum(len(p.timed) for p in pairs if p.run is not None), unit="batch", file=sys.stderr,
                   disable=not progress)
        time_round_robin(pairs, cfg, bar)
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
