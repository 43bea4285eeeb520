"""How long one epoch takes, per (policy, strategy): timed batches, a fitted cost model, an interval.

For each pair: check the strategy can run here, warm it up on a representative batch (the
sampled batch of median work; `runner.warm_up`, which also proves the nested fast path),
check its equivalence on that batch (`equivalence.check`, judged by `judge.judge`), time a
stratified sample of the epoch's batches (every batch with ``measure_all``) with the one timer
`measure.time_fn`, predict the rest (`costmodel`), and probe the peak memory of the largest
batch in a fresh process (`padbench.epoch.memprobe`; on CUDA in this process, where the
counter is exact). A Ctrl-C keeps what was timed: the pair's row is marked ``interrupted``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

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
from .policies import build_epoch, strategies_for


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


def make_batch(lengths, spec: EncoderSpec, device: str, seed: int = 0) -> VarlenBatch:
    return VarlenBatch.from_lengths(np.asarray(lengths), spec.d_model, seed=seed, dtype=spec.dtype, device=device)


def make_strategy(name: str, encoder, row_len: int | None = None):
    """The strategy instance; `rowpacked` packs rows of the epoch's row length."""
    cls = strategy_class(name)
    return cls(encoder, row_len=row_len) if name == "rowpacked" and row_len else cls(encoder)


class BatchRun:
    """A strategy on explicit batches, stepped like `runner.Prepared` (so `runner.warm_up` and
    `equivalence.check` take it): inference under ``no_grad``, training forward + the masked
    loss of `equivalence.loss_weights` + backward, then a device synchronize."""

    def __init__(self, mode: str, device: str, encoder, strategy, batch: VarlenBatch):
        self.case = _Mode(mode, device)
        self.encoder, self.strategy, self.batch = encoder, strategy, batch
        self.model = encoder  # what `equivalence.reference` takes the reference function from
        self.training = mode == "training"
        self._weights: dict[int, tuple] = {}

    def _loss_weights(self, batch):
        hit = self._weights.get(id(batch))
        if hit is None or hit[0] is not batch:
            self._weights = {id(batch): (batch, equivalence.loss_weights(batch))}  # one batch at a time
            hit = self._weights[id(batch)]
        return hit[1]

    def run(self, batch: VarlenBatch) -> torch.Tensor:
        if self.training:
            self.encoder.train()
            self.encoder.zero_grad(set_to_none=True)
            out = self.strategy(batch)
            (out * self._loss_weights(batch)).sum().backward()
        else:
            self.encoder.eval()
            with torch.no_grad():
                out = self.strategy(batch)
        measure.synchronize(self.case.device)
        return out

    def step(self) -> None:
        self.run(self.batch)

    def output(self, batch: VarlenBatch):
        out = self.run(batch).detach()
        if not self.training:
            return out, None
        return out, {n: p.grad.detach().clone() for n, p in self.encoder.named_parameters() if p.grad is not None}


@dataclass(frozen=True)
class _Mode:
    mode: str
    device: str


def base_row(epoch, strategy: str, cfg: EpochConfig) -> dict:
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


def to_time(epoch, cfg: EpochConfig) -> np.ndarray:
    """Indices of the batches a pair times."""
    n = len(epoch.batches)
    if cfg.measure_all:
        return np.arange(n)
    size = cfg.sample or costmodel.sample_size(n)
    return costmodel.stratified_sample(costmodel.features(epoch), size, cfg.seed)


def time_batch(run: BatchRun, batch: VarlenBatch, cfg: EpochConfig) -> float:
    """Seconds one batch takes: the median of `measure.time_fn`'s short adaptive loop."""
    return measure.time_fn(lambda: run.run(batch), cfg.device, min_run_time=cfg.min_run_time,
                           max_run_time=cfg.max_run_time)[0]


def _fill_estimate(row: dict, x: np.ndarray, measured: dict, sample: np.ndarray, cfg: EpochConfig) -> None:
    if not measured:
        return
    row["measured_batches"] = len(measured)
    row["epoch_s"], row["epoch_s_low"], row["epoch_s_high"] = costmodel.estimate(x, measured, seed=cfg.seed)
    row["tokens_per_s"] = row["real_tokens"] / row["epoch_s"] if row["epoch_s"] else None
    if cfg.measure_all and len(measured) == len(x):
        # What the default sample alone would have estimated, from the same timings.
        row["sample_estimate_s"] = costmodel.estimate(x, {int(i): measured[int(i)] for i in sample}, seed=cfg.seed)[0]


def measure_pair(epoch, name: str, cfg: EpochConfig, encoder, *, reference_batch=None, progress=None) -> dict:
    """One row: an epoch of ``epoch`` run by strategy ``name``; failures are recorded, never raised."""
    row = base_row(epoch, name, cfg)
    x = costmodel.features(epoch)
    timed = to_time(epoch, cfg)
    sample = costmodel.stratified_sample(x, cfg.sample or costmodel.sample_size(len(x)), cfg.seed)
    measured: dict[int, float] = {}
    try:
        strategy_class(name).check(cfg.device, cfg.mode, cfg.spec.dtype)
        strategy = make_strategy(name, encoder, epoch.row_len if epoch.shape == "rows" else None)
        rep = reference_batch if reference_batch is not None else representative(epoch, cfg, x, sample)
        run = BatchRun(cfg.mode, cfg.device, encoder, strategy, rep)
        warm = warm_up(run)
        row["prepare_s"], row["fastpath_taken"] = warm["prepare_s"], warm.get("fastpath_taken")
        eq = equivalence.check(run)
        row.update({k: eq[k] for k in ("max_rel_err", "grad_rel_err", "pad_invariant", "nan_free")})
        row["equivalent"], row["why_not"] = judge({**eq, "status": "ok", "mode": cfg.mode, "dtype": row["dtype"]})
        for i in timed:
            batch = make_batch(epoch.batches[i].lengths, cfg.spec, cfg.device, cfg.seed + int(i))
            measured[int(i)] = time_batch(run, batch, cfg)
            if progress is not None:
                progress.update(1)
        _fill_estimate(row, x, measured, sample, cfg)
        if cfg.memory:
            row["peak_mem_bytes"] = peak_memory(epoch, name, cfg, largest(epoch, x))
        row["status"] = "ok"
    except KeyboardInterrupt:
        row.update(status="interrupted", message=f"interrupted after {len(measured)} of {len(timed)} batches")
        _fill_estimate(row, x, measured, sample, cfg)
    except Exception as exc:  # recorded: the other pairs still run
        row.update(failure(exc))
    return row


def representative(epoch, cfg: EpochConfig, x: np.ndarray, sample: np.ndarray) -> VarlenBatch:
    """The sampled batch of median work: the one equivalence is checked and warm-up runs on."""
    work = x[sample, 3] + x[sample, 5] / max(float(x[:, 5].mean()), 1.0) * float(x[:, 3].mean())
    i = int(sample[np.argsort(work)[len(sample) // 2]])
    return make_batch(epoch.batches[i].lengths, cfg.spec, cfg.device, cfg.seed + i)


def largest(epoch, x: np.ndarray) -> int:
    """The batch with the most padded tokens (ties: the most attention work)."""
    return int(np.lexsort((x[:, 5], x[:, 3]))[-1])


def peak_memory(epoch, name: str, cfg: EpochConfig, index: int, *, timeout: float = 600.0) -> int | None:
    """Peak memory of batch ``index`` above what was resident before it (`runner.peak_memory`'s rule:
    CUDA in this process, CPU in a fresh process)."""
    job = {"strategy": name, "device": cfg.device, "mode": cfg.mode, "spec": cfg.spec.as_dict(), "seed": cfg.seed,
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
    """Every (policy, strategy that runs it) row; stops after a row marked ``interrupted``."""
    from tqdm import tqdm

    encoder = cfg.spec.build(cfg.seed, cfg.device)
    epochs = [build_epoch(p, lengths, batch_size=cfg.batch_size, max_tokens=cfg.max_tokens, row_len=cfg.row_len,
                          seed=cfg.seed) for p in policies]
    pairs = [(e, s) for e in epochs for s in strategies_for(e.policy, strategies)]
    total = sum(len(to_time(e, cfg)) for e, _ in pairs)
    rows: list[dict] = []
    bar = tqdm(total=total, unit="batch", file=sys.stderr, disable=not progress)
    try:
        for epoch in epochs:
            names = strategies_for(epoch.policy, strategies)
            if not names:
                continue
            x = costmodel.features(epoch)
            sample = costmodel.stratified_sample(x, cfg.sample or costmodel.sample_size(len(x)), cfg.seed)
            ref = representative(epoch, cfg, x, sample)  # one batch per policy: its reference is computed once
            for name in names:
                bar.set_description(f"{epoch.policy} {name}")
                rows.append(measure_pair(epoch, name, cfg, encoder, reference_batch=ref, progress=bar))
                if on_row is not None:
                    on_row(rows)
                if rows[-1]["status"] == "interrupted":
                    return rows
    finally:
        bar.close()
    return rows
