"""Shared machinery of the asv suite, in the style of scipy's ``benchmarks/common.py``.

The suite is thin: every number comes from ``padbench`` (``runner.prepare(case).step()`` for
timings, ``runner.measure_case`` for the derived metrics).  What lives here is only the asv
plumbing:

* `EncoderBenchmark` -- the XPBenchmark idea: a ``device`` parameter next to the case
  parameters, unsupported combinations turned into ``SkipNotImplemented`` in ``setup``
  (never a failure or a NaN), CUDA synchronised inside the timed call (``Prepared.step``
  does it), expensive set-up cached per process.
* `metrics_cache(mode)` -- one ``setup_cache`` per mode that measures every case once in one
  process: tokens/s, efficiency, equivalence errors, the nested fast-path proof, and the
  time of ``padded`` on the same lengths, so that "speedup over padded" is a ratio of two
  timings taken side by side.  Its result is plain Python (no tensors), so the many small
  ``track_*`` processes that read it never import torch.

Importing this module must stay cheap (asv imports it in every benchmark process): torch and
padbench are imported inside functions only.

Environment knobs (read when a benchmark process starts):

``PADBENCH_ASV_DISTRIBUTIONS``  comma list, default ``uniform,lognormal`` (add constant for a no-padding control)
``PADBENCH_ASV_BATCH``          batch size, default 16
``PADBENCH_ASV_MAX_LEN``        longest sequence, default 256
``PADBENCH_ASV_THREADS``        torch threads (default: torch's own choice)
``PADBENCH_ASV_METRIC_MEMORY``  0: no per-batch peak memory in the metrics (track_peak_mem_bytes skips)
``PADBENCH_ASV_MODEL``          the model (``padbench run --model``): spec (default), MODULE:CALLABLE or
                                hf:SOURCE; any other than spec names every benchmark after it (its own series)
``PADBENCH_ASV_HF_CONFIG``      hf: models: ``key=value,...`` config overrides (``--hf-config``)
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
import time

try:
    from asv_runner.benchmarks.mark import SkipNotImplemented
except ImportError:  # asv < 0.6 or imported outside asv (tests)
    class SkipNotImplemented(NotImplementedError):
        pass


def _env_list(name: str, default: str) -> list[str]:
    return [x.strip() for x in os.environ.get(name, default).split(",") if x.strip()]


# The full list of strategy names from DESIGN.md, fixed here rather than read from the
# registry so that asv's parameter grid is the same at every commit (a strategy that a
# commit lacks is a skip, not a change of grid that splits the history).
STRATEGIES = ["padded", "bucketed", "nested_fastpath", "jagged", "loop", "packed", "rowpacked", "flex", "varlen_attn"]
MODEL = os.environ.get("PADBENCH_ASV_MODEL", "spec")
HF_CONFIG = os.environ.get("PADBENCH_ASV_HF_CONFIG", "")
if MODEL.startswith("hf:"):  # the model's own padded call: the baseline its users run today
    STRATEGIES += ["hf_sdpa", "hf_eager"]
DISTRIBUTIONS = _env_list("PADBENCH_ASV_DISTRIBUTIONS", "uniform,lognormal")
DEVICES = ["cpu", "cuda"]
MODES = ["inference", "training"]
BATCH_SIZE = int(os.environ.get("PADBENCH_ASV_BATCH", "16"))
MAX_LEN = int(os.environ.get("PADBENCH_ASV_MAX_LEN", "256"))
SEED = 0
BASELINE = "padded"
WARMUP_STEPS = 2  # before anything is timed: a fresh process's first steps are slow
# asv keys its history on a benchmark's version, by default a hash of its source: any edit of
# this plumbing would orphan every earlier result. Bump this when what is measured changes.
SUITE_VERSION = "padbench-asv-1"


def cuda_present() -> bool:
    """Cheap, torch-free guess whether this machine has an NVIDIA GPU (for fast skips)."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def set_threads() -> None:
    threads = os.environ.get("PADBENCH_ASV_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def make_case(strategy: str, distribution: str, device: str, mode: str):
    from padbench.runner import Case

    model = {}
    if MODEL != "spec":
        if "model" not in getattr(Case, "__dataclass_fields__", {}):
            raise SkipNotImplemented(f"PADBENCH_ASV_MODEL={MODEL}: this commit runs padbench's own encoder only")
        model = {"model": MODEL, "hf_config": HF_CONFIG}
    return Case(strategy=strategy, distribution=distribution, device=device, mode=mode,
                batch_size=BATCH_SIZE, max_len=MAX_LEN, seed=SEED, **model)


def name_for_model(namespace: dict) -> None:
    """Name every benchmark of a module after PADBENCH_ASV_MODEL (any model but spec).

    asv keys a series by benchmark name and parameters: without this, results of two models
    would land in one series of the dashboard. The default model keeps today's names.
    """
    if MODEL == "spec":
        return
    slug = re.sub(r"\W+", "_", f"{MODEL}_{HF_CONFIG}".rsplit("/", 1)[-1]).strip("_")
    module = namespace["__name__"].split(".", 1)[-1]
    for cls in [v for v in namespace.values() if isinstance(v, type) and v.__module__ == namespace["__name__"]]:
        for attr in dir(cls):
            func = getattr(cls, attr)
            if re.match(r"(time|peakmem|track|mem)_", attr) and callable(func):
                @functools.wraps(func)
                def named(*args, __func=func, **kwargs):
                    return __func(*args, **kwargs)

                named.benchmark_name = f"{module}.{cls.__name__}.{attr}_{slug}"
                setattr(cls, attr, named)


def check_device(device: str) -> None:
    """SkipNotImplemented unless `device` can run here (imports torch only for cuda)."""
    if device == "cpu":
        return
    if device == "cuda":
        if not cuda_present():
            raise SkipNotImplemented("cuda: no NVIDIA GPU on this machine")
        import torch

        if not torch.cuda.is_available():
            raise SkipNotImplemented("cuda: torch sees no CUDA device")
        return
    raise SkipNotImplemented(f"unknown device {device!r}")


@functools.cache
def prepared(strategy: str, distribution: str, device: str, mode: str):
    """`padbench.runner.prepare` once per process and case, warmed up by one step.

    asv re-runs ``setup`` before every timing sample; this keeps that re-run free.
    Raises SkipNotImplemented for combinations padbench declares unsupported.
    """
    check_device(device)
    set_threads()
    try:
        from padbench.errors import UnsupportedError
        from padbench.runner import prepare
    except ImportError as exc:  # an old commit without the runner
        raise SkipNotImplemented(f"padbench.runner not importable at this commit: {exc}")
    try:
        prep = prepare(make_case(strategy, distribution, device, mode))
        for _ in range(WARMUP_STEPS):  # lazy init, compilation, allocator growth, kernel caches
            prep.step()
    except UnsupportedError as exc:
        raise SkipNotImplemented(str(exc))
    except Exception as exc:  # unknown strategy name at this commit
        if type(exc).__name__ == "PadbenchError" and "unknown strategy" in str(exc):
            raise SkipNotImplemented(str(exc))
        raise
    return prep


def support_table() -> dict:
    """``{(strategy, device, mode): reason or None}``: what padbench declares it can run.

    The ``setup_cache`` of the step benchmarks: one process asks padbench once, so the many
    processes of unsupported combinations skip without importing torch."""
    table = {}
    try:
        from padbench import strategies
    except ImportError as exc:
        return {"error": f"padbench.strategies not importable: {exc}"}
    known = set(strategies.names())
    for device in DEVICES:
        try:
            check_device(device)
            device_reason = None
        except NotImplementedError as exc:
            device_reason = str(exc)
        for mode in MODES:
            for s in STRATEGIES:
                if device_reason:
                    reason = device_reason
                elif s not in known:
                    reason = f"strategy {s!r} does not exist at this commit"
                else:
                    reason = strategies.strategy_class(s).unsupported_reason(device, mode)
                table[(s, device, mode)] = reason
    return table


class EncoderBenchmark:
    """Base: params strategy x distribution x device for one `mode`; skips in setup.

    Like scipy's XPBenchmark: the device is a parameter, a combination this machine or this
    torch cannot run is skipped in ``setup``, and the timed call synchronises the device.
    """

    mode = "inference"
    devices_here = tuple(DEVICES)  # devices this class measures on; others skip at once
    param_names = ("strategy", "distribution", "device")
    params = (STRATEGIES, DISTRIBUTIONS, DEVICES)
    timeout = 600
    version = SUITE_VERSION

    def setup_cache(self):
        return support_table()

    setup_cache.timeout = 300

    def setup(self, cache, strategy, distribution, device):
        if device not in self.devices_here:
            raise SkipNotImplemented(f"{type(self).__name__} measures on {', '.join(self.devices_here)} only")
        if "error" in cache:
            raise SkipNotImplemented(cache["error"])
        reason = cache.get((strategy, device, self.mode))
        if reason:
            raise SkipNotImplemented(reason)
        self.prep = prepared(strategy, distribution, device, self.mode)


def reset_peak_rss() -> None:
    """Reset the kernel's RSS high-water mark, so that asv's peakmem reading (ru_maxrss,
    which follows VmHWM) covers only what runs after this call."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


# --- setup_cache: every metric of every case, measured once per mode ------------------

METRIC_FIELDS = (
    "status", "message", "time_s", "time_spread", "tokens_per_s", "padded_tokens_per_s",
    "efficiency", "useful_flops", "matmul_flops", "max_abs_err", "max_rel_err", "grad_rel_err",
    "pad_invariant", "nan_free", "fastpath_taken", "padding_ratio", "num_tokens",
    "batch_size", "max_len", "peak_mem_bytes",
)


def _plain(value):
    """Make a record value picklable without torch/numpy (numbers, str, bool, None)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, (int,)) or (hasattr(value, "dtype") and "int" in str(value.dtype)):
        return int(value)
    return f


# Timing budget of each case inside setup_cache (seconds): enough for tokens/s and the speedup
# ratio; asv's own time_step benchmarks are the careful timings.
METRIC_MIN_TIME = float(os.environ.get("PADBENCH_ASV_METRIC_MIN_TIME", "0.3"))
METRIC_MAX_TIME = float(os.environ.get("PADBENCH_ASV_METRIC_MAX_TIME", "2.0"))


# The peak memory `padbench run` records (one batch above what was resident before it; on CPU in a
# fresh process): what track_peak_mem_bytes reports. 0 skips it (a fresh process per case costs seconds).
METRIC_MEMORY = os.environ.get("PADBENCH_ASV_METRIC_MEMORY", "1") != "0"


def measure_one(runner, case) -> dict:
    """One record from ``runner.measure_case``, as `padbench run` measures it (every commit that
    has a runner takes these keywords)."""
    return runner.measure_case(case, memory=METRIC_MEMORY, min_run_time=METRIC_MIN_TIME,
                               max_run_time=METRIC_MAX_TIME)


def metrics_cache(mode: str) -> dict:
    """Measure every (strategy, distribution, device) of `mode` in this one process.

    Returns ``{"cases": {(strategy, distribution, device): record}, "meta": {...}}`` where a
    record holds only plain Python values.  Unsupported cases carry ``status ==
    "unsupported"`` and the reason; a case that raised carries ``status == "error"``.
    """
    set_threads()
    cases: dict = {}
    started = time.time()
    _measure_all(mode, cases)
    add_speedups(cases)
    return {"cases": cases, "meta": {"mode": mode, "seconds": time.time() - started,
                                     "batch_size": BATCH_SIZE, "max_len": MAX_LEN}}


def _unsupported(cases: dict, devices, reason: str) -> None:
    for device in devices:
        for s in STRATEGIES:
            for d in DISTRIBUTIONS:
                cases[(s, d, device)] = {"status": "unsupported", "message": reason}


def _measure_all(mode: str, cases: dict) -> None:
    try:
        from padbench import runner
        from padbench.errors import UnsupportedError
    except ImportError as exc:  # an old commit without the runner: skip, as the step benchmarks do
        _unsupported(cases, DEVICES, f"padbench.runner not importable at this commit: {exc}")
        return
    for device in DEVICES:
        try:
            check_device(device)
        except NotImplementedError as exc:
            _unsupported(cases, [device], str(exc))
            continue
        for d in DISTRIBUTIONS:
            for s in STRATEGIES:
                t0 = time.time()
                try:
                    rec = measure_one(runner, make_case(s, d, device, mode))
                except UnsupportedError as exc:
                    rec = {"status": "unsupported", "message": str(exc)}
                except Exception as exc:  # noqa: BLE001 - any failure is recorded; setup turns it into a failure
                    msg = f"{type(exc).__name__}: {exc}"
                    unsupported = "unknown strategy" in str(exc) or isinstance(exc, NotImplementedError)
                    status = "unsupported" if unsupported else "error"
                    rec = {"status": status, "message": msg}
                cases[(s, d, device)] = {k: _plain(rec.get(k)) for k in METRIC_FIELDS if k in rec}
                print(f"padbench setup_cache {mode} {device} {d} {s}: {rec.get('status')} "
                      f"in {time.time() - t0:.1f} s", file=sys.stderr, flush=True)


def add_speedups(cases: dict) -> None:
    """Set each case's ``speedup``: ``padded``'s time over its own, on the same lengths and device.

    Both were timed in this one process, so the ratio is free of process-to-process noise.
    `padbench.judge` computes it where the commit has one, so asv and the report agree by
    construction; older commits get the same ratio computed here.
    """
    try:
        from padbench import judge
    except ImportError:
        judge = None
    if judge is None:
        for (_, d, device), rec in cases.items():
            base = cases.get((BASELINE, d, device), {})
            ok = rec.get("status") == "ok" and base.get("status") == "ok"
            rec["speedup"] = (base["time_s"] / rec["time_s"]) if ok and rec.get("time_s") else None
        return
    import pandas as pd

    df = pd.DataFrame([{"strategy": s, "distribution": d, "device": device, "status": rec.get("status"),
                        "time_s": rec.get("time_s")} for (s, d, device), rec in cases.items()])
    ratios = judge.speedup(df, ["distribution", "device"], value="time_s") if len(df) else []
    for rec, status, ratio in zip(cases.values(), df.get("status", []), ratios):
        rec["speedup"] = float(ratio) if status == "ok" and math.isfinite(ratio) else None


class MetricsBenchmark:
    """Base of the ``track_*`` classes: values come from the mode's shared setup_cache."""

    mode = "inference"
    param_names = ("strategy", "distribution", "device")
    params = (STRATEGIES, DISTRIBUTIONS, DEVICES)
    timeout = 1800  # setup_cache measures every case of the mode in one process
    version = SUITE_VERSION

    def setup(self, cache, strategy, distribution, device):
        rec = cache["cases"].get((strategy, distribution, device))
        if rec is None:
            raise SkipNotImplemented("case not measured by setup_cache")
        if rec.get("status") == "unsupported":
            raise SkipNotImplemented(rec.get("message") or "unsupported")
        if rec.get("status") != "ok":
            raise RuntimeError(f"{strategy}/{distribution}/{device}: {rec.get('status')}: "
                               f"{rec.get('message')}")
        self.rec = rec

    def value(self, name: str) -> float:
        v = self.rec.get(name)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise SkipNotImplemented(f"{name} not recorded for this case")
        return float(v)
