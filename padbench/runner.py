"""Cases: what to run, how to run one batch of it, and the record it leaves.

A `Case` names a strategy, a length distribution, device, mode, batch size, max_len, model and
seed; the model is a string (`padbench.models`: ``spec``, ``MODULE:CALLABLE``, ``hf:SOURCE``) so
a case re-creates itself in a fresh process. `prepare` builds (and caches) its weights, batch
and strategy; `Prepared.step` runs one
batch — inference forward under ``no_grad``, or training forward + loss over valid tokens +
backward — and synchronizes. `measure_case` turns a case into one record, whatever happens:
an unsupported combination, an OOM or an error is recorded, never raised.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace

import torch

from . import equivalence, measure, models
from .errors import PadbenchError, UnsupportedError, failure
from .lengths import check_distribution, padding_ratio, resolve_max_len, sample_lengths
from .model import EncoderSpec
from .repro import record_command
from .strategies import DEVICES, MODES, strategy_class
from .strategies.nested_fastpath import NestedFastpath

RECORD_FIELDS = (
    "strategy", "distribution", "device", "mode", "batch_size", "max_len", "padding_ratio", "num_tokens",
    "status", "message", "time_s", "time_spread", "tokens_per_s", "padded_tokens_per_s", "useful_flops",
    "efficiency", "matmul_flops", "peak_mem_bytes", "max_abs_err", "max_rel_err", "grad_rel_err",
    "grad_worst_param", "pad_invariant", "nan_free", "fastpath_taken", "d_model", "nhead",
    "dim_feedforward", "num_layers", "activation", "norm_first", "dtype", "seed", "prepare_s",
    "model_kind", "model_source", "model_config", "num_params", "repro",
)


def check_device(device: str) -> None:
    if device not in DEVICES:
        raise PadbenchError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise PadbenchError("device cuda requested but no CUDA GPU is available (torch.cuda.is_available() is False)")


@dataclass(frozen=True)
class Case:
    strategy: str
    distribution: str
    device: str = "cpu"
    mode: str = "inference"
    batch_size: int = 32
    max_len: int | None = None  # None: the distribution's default
    spec: EncoderSpec = field(default_factory=EncoderSpec)  # a spec model's sizes; every model's dtype
    seed: int = 0
    target_padding: float | None = None
    model: str = "spec"  # spec | MODULE:CALLABLE | hf:SOURCE
    hf_config: str = ""  # hf: models: key=value,... overrides of the config
    lengths: tuple[int, ...] | None = None  # an explicit batch (an epoch's); `distribution` is then a label
    row_len: int | None = None  # rowpacked: the row length (None: each batch's longest sequence)

    def validate(self) -> "Case":
        strategy_class(self.strategy)
        if self.mode not in MODES:
            raise PadbenchError(f"unknown mode {self.mode!r}; choose from {', '.join(MODES)}")
        check_device(self.device)
        if self.lengths is not None:
            return replace(self, max_len=self.max_len or max(self.lengths, default=1))
        check_distribution(self.distribution)
        return replace(self, max_len=resolve_max_len(self.distribution, self.max_len))

    def batch_lengths(self) -> tuple[int, ...]:
        """The lengths of the case's batch: explicit, or drawn from its distribution and seed."""
        if self.lengths is not None:
            return self.lengths
        return lengths_for(self.distribution, self.batch_size, self.max_len, self.seed, self.target_padding)

    def strategy_options(self) -> dict:
        return {"row_len": self.row_len} if self.row_len is not None else {}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spec"] = self.spec.as_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Case":
        d = dict(d)
        d["spec"] = EncoderSpec(**d["spec"])
        if d.get("lengths") is not None:
            d["lengths"] = tuple(int(n) for n in d["lengths"])
        return cls(**d)


@functools.lru_cache(maxsize=64)
def lengths_for(distribution: str, batch_size: int, max_len: int | None, seed: int, target_padding=None):
    return tuple(int(n) for n in sample_lengths(distribution, batch_size, max_len, seed, target_padding=target_padding))


def model_for(case: Case) -> models.Model:
    """The case's model at its device and dtype (built once per process)."""
    return models.resolve(case.model, case.hf_config, case.spec, case.seed, case.device)


class Prepared:
    """A case ready to run: weights, batch and strategy built once.

    ``encoder`` is the module whose parameters a training step trains (for a Hugging Face model,
    its embeddings and layers, or the model itself for its own call); ``bound`` runs the
    strategy on the model's batch.
    """

    def __init__(self, case: Case):
        self.case = case
        self.model = model_for(case)
        self.batch = self.model.batch(case.batch_lengths(), case.seed)
        self.bound = self.model.bind(case.strategy, **case.strategy_options())
        self.encoder, self.strategy = self.bound.module, self.bound.strategy
        self.training = case.mode == "training"
        self._loss_w = equivalence.loss_weights(self.batch)

    def run(self, batch) -> torch.Tensor:
        """The strategy's packed output on ``batch`` (training: after the backward pass)."""
        if self.training:
            self.encoder.train()
            self.encoder.zero_grad(set_to_none=True)
            out = self.bound(batch)
            w = self._loss_w if batch is self.batch else equivalence.loss_weights(batch)
            (out * w).sum().backward()
        else:
            self.encoder.eval()
            with torch.no_grad():
                out = self.bound(batch)
        measure.synchronize(self.case.device)
        return out

    def step(self) -> None:
        """One timed batch."""
        self.run(self.batch)

    def output(self, batch):
        """(packed output, parameter gradients or None) for equivalence checks."""
        out = self.run(batch).detach()
        if not self.training:
            return out, None
        return out, self.bound.grads()


def prepare(case: Case) -> Prepared:
    """Validate ``case`` and build it; raises UnsupportedError if the strategy cannot run it."""
    case = case.validate()
    strategy_class(case.strategy).check(case.device, case.mode, case.spec.dtype)
    return Prepared(case)


def warm_up(prepared: Prepared) -> dict:
    """The preparation step every case goes through before anything is timed, screened or probed.

    The first batch carries every one-time cost (a kernel build, `torch.compile`, Triton
    autotuning, lazy imports, allocator growth); the second is a steady batch. Returns
    ``prepare_s`` (the first batch's time beyond a steady one: what preparation cost),
    ``first_batch_s`` (the steady batch) and, for `nested_fastpath`, ``fastpath_taken``.
    Raises UnsupportedError when the nested fast path silently fell back (it is not that strategy).
    """
    t0 = time.perf_counter()
    prepared.step()
    first = time.perf_counter() - t0
    info = {}
    t0 = time.perf_counter()
    if isinstance(prepared.strategy, NestedFastpath):
        info["fastpath_taken"] = prepared.strategy.probe(prepared.step)
        if not info["fastpath_taken"]:
            raise UnsupportedError(prepared.strategy.fallback_reason)
    else:
        prepared.step()
    steady = time.perf_counter() - t0
    return {"prepare_s": max(first - steady, 0.0), "first_batch_s": steady, **info}


def peak_memory(case: Case, *, timeout: float = 600.0) -> int | None:
    """Peak memory of one batch of ``case`` above what was resident before it.

    CUDA: in this process (``max_memory_allocated`` is exact). CPU: in a fresh process
    (``python -m padbench.memprobe``), since the resident high-water mark is only exact there.
    """
    if case.device == "cuda":
        prepared = prepare(case)
        prepared.step()  # one-time work is not the batch's memory (CUDA's peak counter is exact after it)
        return measure.peak_bytes_in_process(prepared.step, case.device)
    if not measure.cpu_peak_supported():
        return None
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.run([sys.executable, "-m", "padbench.memprobe", json.dumps(case.to_dict())],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"memory probe failed: {tail}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_mem_bytes"])


def describe(case: Case) -> models.Description:
    return models.describe(case.model, case.hf_config, case.spec, case.seed)


def check_case(case: Case) -> Case:
    """Refuse, in one line, a validated case whose lengths the model cannot take."""
    limit = describe(case).max_len
    if limit is not None and case.max_len is not None and case.max_len > limit:
        raise PadbenchError(f"{case.model} takes at most {limit} tokens a sequence (its position embeddings); "
                            f"{case.distribution} reaches {case.max_len}: lower --max-len")
    return case


def base_record(case: Case) -> dict:
    rec = dict.fromkeys(RECORD_FIELDS)
    rec.update(
        strategy=case.strategy, distribution=case.distribution, device=case.device, mode=case.mode,
        batch_size=case.batch_size, max_len=case.max_len, seed=case.seed, status="error", message="",
        dtype=case.spec.as_dict()["dtype"], **describe(case).fields(),
    )
    rec["repro"] = record_command(case)  # the command that measures this case again
    lengths = case.batch_lengths()
    rec["num_tokens"] = sum(lengths)
    rec["padding_ratio"] = padding_ratio(lengths)
    rec["padded_tokens"] = len(lengths) * max(lengths)
    return rec


def measure_case(
    case: Case,
    *,
    min_run_time: float = 1.0,
    max_run_time: float = 8.0,
    memory: bool = True,
    check_equivalence: bool = True,
) -> dict:
    """Run one case end to end and return its record (status ok | unsupported | oom | error)."""
    case = case.validate()
    rec = base_record(case)
    prepared = None
    try:
        prepared = prepare(case)
        warm = warm_up(prepared)
        rec["prepare_s"] = warm["prepare_s"]
        rec["fastpath_taken"] = warm.get("fastpath_taken")
        if check_equivalence:
            eq = equivalence.check(prepared)
            rec.update({k: v for k, v in eq.items() if k in rec})
            if eq.get("nan_message"):
                rec["message"] = eq["nan_message"]
        median, spread = measure.time_fn(prepared.step, case.device, min_run_time=min_run_time,
                                         max_run_time=max_run_time)
        rec.update(time_s=median, time_spread=spread)
        rec["tokens_per_s"] = rec["num_tokens"] / median
        rec["padded_tokens_per_s"] = rec.pop("padded_tokens") / median
        shape = prepared.model.description.shape
        rec["useful_flops"] = measure.useful_flops(prepared.batch.lengths_list, shape, case.mode)
        rec["matmul_flops"] = measure.matmul_flops(case.device, case.spec.dtype, shape.d_model, shape.dim_feedforward)
        rec["efficiency"] = float(rec["useful_flops"] / median / rec["matmul_flops"])
        if memory:
            rec["peak_mem_bytes"] = peak_memory(case)
        rec["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # recorded, never raised: a sweep keeps going
        rec.update(failure(exc))
        if prepared is not None:  # what the strategy saw before it stopped (e.g. a fast path not taken)
            rec.update({k: v for k, v in prepared.strategy.info().items() if k in rec})
        if rec["status"] == "oom" and case.device == "cuda":
            torch.cuda.empty_cache()
    finally:
        rec.pop("padded_tokens", None)
    return rec


def sweep_cases(strategies, distributions, modes, *, device="cpu", batch_size=32, max_len=None, spec=None, seed=0,
                model="spec", hf_config=""):
    """Every (mode, distribution, strategy) case, `padded` first in each group (speedups need it)."""
    spec = spec or EncoderSpec()
    ordered = sorted(strategies, key=lambda s: s != "padded")
    return [
        Case(s, dist, device, mode, batch_size, max_len, spec, seed, model=model, hf_config=hf_config)
        for mode in modes
        for dist in distributions
        for s in ordered
    ]


__all__ = ["Case", "Prepared", "RECORD_FIELDS", "check_case", "check_device", "describe", "measure_case", "model_for",
           "peak_memory", "prepare", "sweep_cases", "warm_up"]
