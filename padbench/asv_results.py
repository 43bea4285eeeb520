"""Read asv's results (``results/<machine>/<commit>-<env>.json``) into padbench's DataFrame shape.

`load(results_dir)` returns one row per (machine, commit, environment, strategy, distribution,
device, mode) with the columns of a padbench run record (see `padbench.runner.RECORD_FIELDS`)
that the asv suite in ``benchmarks/`` measures, plus ``speedup`` and ``env_*`` columns, so
that `padbench.report.sources` can treat asv results and padbench run files
(`padbench.results.load`) alike.  Columns a benchmark did not record are NaN / None.

Only the standard library, numpy and pandas are used: asv itself need not be importable.
The results format read is asv's version 2 (asv >= 0.5): ``result_columns`` names the
fields of each benchmark's entry in ``results``; a parameterised benchmark stores a flat
list of values over ``itertools.product(*params)``, params as ``repr`` strings; ``null``
means failed, NaN (written as ``NaN`` or null) means skipped.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import os
from pathlib import Path

import pandas as pd

# The suite names its classes <Mode><Kind> (``InferenceMetrics``, ``TrainingMemory``...): the
# prefix gives the record's mode, the rest (`ASV_CLASS_COLUMNS`) which column each method fills.
ASV_CLASS_MODE = {"Inference": "inference", "Training": "training"}

ASV_CLASS_COLUMNS = {  # class name after the mode -> {method: record column}
    "": {"time_step": "time_s"},
    # Whole-process (CPU) and whole-allocation (CUDA) peaks: not `padbench run`'s peak_mem_bytes,
    # which the Metrics classes track (one batch above what was resident before it).
    "Memory": {"peakmem_step": "process_peak_bytes"},
    "CudaMemory": {"track_cuda_peak_bytes": "process_peak_bytes"},
    "Metrics": {
        "track_tokens_per_s": "tokens_per_s",
        "track_speedup_vs_padded": "speedup",
        "track_efficiency": "efficiency",
        "track_peak_mem_bytes": "peak_mem_bytes",
        "track_max_rel_err": "max_rel_err",
        "track_grad_rel_err": "grad_rel_err",
        "track_pad_checks": "pad_checks",
    },
}

KEY = ["env_machine", "env_git_commit", "env_name", "strategy", "distribution", "device", "mode"]


def _parse_param(s):
    try:
        return ast.literal_eval(s)
    except (ValueError, SyntaxError):
        return s


def _is_value(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _entry_columns(doc: dict, entry) -> dict:
    cols = doc.get("result_columns") or ["result", "params", "version", "started_at", "duration",
                                         "stats_ci_99_a", "stats_ci_99_b", "stats_q_25", "stats_q_75",
                                         "stats_number", "stats_repeat", "samples", "profile"]
    if isinstance(entry, dict):  # results format 1 stores each benchmark's fields by name
        return entry
    return dict(zip(cols, entry))


def iter_result_files(results_dir: str | os.PathLike):
    """(machine name, path) of every asv result file under results_dir (machine folders only)."""
    root = Path(results_dir)
    for machine_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if not (machine_dir / "machine.json").exists():
            continue  # e.g. results/padbench/ (padbench's own *.pbjson run files)
        for path in sorted(machine_dir.glob("*.json")):
            if path.name != "machine.json":
                yield machine_dir.name, path


# asv's per-value statistics (``stats_<column>`` in a result file) -> the names used here.
_STATS = {"q25": "q_25", "q75": "q_75", "ci_low": "ci_99_a", "ci_high": "ci_99_b", "repeat": "repeat"}


def _expand(doc: dict, name: str):
    """Yield (params dict, value, stats dict) for one benchmark of one result file."""
    entry = _entry_columns(doc, doc["results"][name])
    values = entry.get("result")
    params = entry.get("params") or []
    if not isinstance(values, list):
        values = [values]
    combos = list(itertools.product(*params)) if params else [()]
    stats = {k: entry.get(f"stats_{c}") or [] for k, c in _STATS.items()}
    for i, combo in enumerate(combos):
        if i >= len(values):
            break
        yield [_parse_param(p) for p in combo], values[i], {k: v[i] if i < len(v) else None for k, v in stats.items()}


def _time_stats(r: dict, value: float, stats: dict) -> None:
    """A timing's spread (IQR / median, as `padbench run` records it) and asv's 99% interval of it.

    One sample (``repeat == 1``, as in ``asv run --quick``) has quartiles equal to the value and an
    infinite interval: it says nothing about noise, so no spread is recorded for it.
    """
    r["time_repeat"] = stats["repeat"] if _is_value(stats["repeat"]) else None
    if stats["repeat"] == 1 or not value:
        return
    if _is_value(stats["q25"]) and _is_value(stats["q75"]):
        r["time_spread"] = (stats["q75"] - stats["q25"]) / value
    lo, hi = stats["ci_low"], stats["ci_high"]
    if _is_value(lo) and _is_value(hi) and math.isfinite(lo) and math.isfinite(hi):
        r["time_ci_low"], r["time_ci_high"] = float(lo), float(hi)


def _row_key(meta: dict, strategy, distribution, device, mode):
    return (meta["env_machine"], meta["env_git_commit"], meta["env_name"], strategy, distribution, device, mode)


def load_file(path: str | os.PathLike, machine: str | None = None, machine_info: dict | None = None) -> pd.DataFrame:
    """Rows of one asv result file (see module docstring)."""
    path = Path(path)
    with open(path) as f:
        doc = json.load(f)
    machine = machine or doc.get("params", {}).get("machine") or path.parent.name
    machine_info = machine_info or {}
    p = doc.get("params", {})
    reqs = doc.get("requirements", {}) or {}
    meta = {
        "env_machine": machine,
        "env_git_commit": doc.get("commit_hash"),
        "env_name": doc.get("env_name"),
        "env_date": pd.to_datetime(doc["date"], unit="ms", utc=True) if doc.get("date") else pd.NaT,
        "env_torch_version": reqs.get("torch") or p.get("torch") or None,
        "env_python": doc.get("python") or p.get("python"),
        "env_cpu_model": machine_info.get("cpu") or p.get("cpu"),
        "env_num_cpu": machine_info.get("num_cpu") or p.get("num_cpu"),
        "env_os": machine_info.get("os") or p.get("os"),
        "env_source": "asv",
        "env_file": str(path),
    }
    rows: dict[tuple, dict] = {}
    lengths: dict[str, dict] = {}
    fastpath: dict[tuple, float] = {}

    def row(strategy, distribution, device, mode):
        key = _row_key(meta, strategy, distribution, device, mode)
        if key not in rows:
            rows[key] = {**meta, "strategy": strategy, "distribution": distribution, "device": device,
                         "mode": mode, "source": "asv"}
        return rows[key]

    for name in doc.get("results", {}):
        parts = name.split(".")
        if len(parts) < 3:
            continue
        cls, method = parts[-2], parts[-1]
        if cls == "Lengths":
            for (dist,), value, _ in _expand(doc, name):
                if _is_value(value):
                    col = {"track_padding_ratio": "padding_ratio", "track_num_tokens": "num_tokens",
                           "track_batch_size": "batch_size", "track_max_len": "max_len"}.get(method)
                    if col:
                        lengths.setdefault(dist, {})[col] = value
            continue
        if cls == "NestedFastpath" and method == "track_fastpath_taken":
            for (dist, device), value, _ in _expand(doc, name):
                if _is_value(value):
                    fastpath[(dist, device)] = value
            continue
        prefix = next((p for p in ASV_CLASS_MODE if cls.startswith(p)), None)
        if prefix is None:
            continue
        mode = ASV_CLASS_MODE[prefix]
        col = ASV_CLASS_COLUMNS.get(cls[len(prefix):], {}).get(method)
        if col is None:
            continue
        for combo, value, stats in _expand(doc, name):
            if len(combo) != 3:
                continue
            strategy, dist, device = combo
            r = row(strategy, dist, device, mode)
            if _is_value(value):
                r[col] = float(value)
                if col == "time_s":
                    _time_stats(r, float(value), stats)
            elif value is None:  # asv: null = the benchmark failed
                r.setdefault("failed", []).append(method)

    out = []
    for r in rows.values():
        dist = r["distribution"]
        r.update(lengths.get(dist, {}))
        if r["strategy"] == "nested_fastpath" and r["mode"] == "inference":
            v = fastpath.get((dist, r["device"]))
            if v is not None:
                r["fastpath_taken"] = bool(v)
        if _is_value(r.get("pad_checks")):
            # the suite tracks both pad checks as one flag: pads invariant and no NaN
            r["pad_invariant"] = r["nan_free"] = bool(r.pop("pad_checks"))
        r.pop("pad_checks", None)
        for col in ("batch_size", "max_len", "num_tokens"):
            if _is_value(r.get(col)):
                r[col] = int(r[col])
        measured = [c for c in ("time_s", "tokens_per_s", "peak_mem_bytes", "process_peak_bytes", "max_rel_err")
                    if _is_value(r.get(c))]
        failed = r.pop("failed", [])
        if failed:
            r["status"], r["message"] = "error", "asv benchmark failed: " + ", ".join(sorted(set(failed)))
        elif measured:
            r["status"], r["message"] = "ok", ""
        else:
            r["status"], r["message"] = "unsupported", "skipped by the asv suite"
        if _is_value(r.get("time_s")) and _is_value(r.get("num_tokens")) and not _is_value(r.get("tokens_per_s")):
            r["tokens_per_s"] = r["num_tokens"] / r["time_s"]
        out.append(r)
    return pd.DataFrame(out)


def load(results_dir: str | os.PathLike = "results") -> pd.DataFrame:
    """Every asv result under results_dir as one DataFrame (empty when there is none)."""
    frames = []
    for machine, path in iter_result_files(results_dir):
        info_path = Path(path).parent / "machine.json"
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            info = {}
        try:
            frames.append(load_file(path, machine, info))
        except (ValueError, KeyError, OSError) as exc:  # a foreign or truncated file
            import warnings

            warnings.warn(f"skipping asv result {path}: {exc}", stacklevel=2)
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=KEY + ["status"])
    return pd.concat(frames, ignore_index=True)


def is_asv_results_dir(path: str | os.PathLike) -> bool:
    """True if path holds at least one asv machine folder (``<machine>/machine.json``)."""
    return any(True for _ in iter_result_files(path))


# --------------------------------------------------------------------------- asv machine
def _slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def cpu_short_name(model: str) -> str:
    """'Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz' -> 'xeon-platinum-8480'."""
    import re

    s = re.sub(r"\((R|TM|tm|r)\)", " ", model)
    s = re.sub(r"@.*$", " ", s)
    s = re.sub(r"\b\d+-Core\b|\bCPU\b|\bProcessor\b|\bIntel\b|\bAMD\b|\bwith\b.*$", " ", s, flags=re.IGNORECASE)
    return _slug(s)[:40] or "cpu"


def gpu_name() -> str | None:
    """Name of the first NVIDIA GPU (nvidia-smi, else torch), or None."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 check=False, capture_output=True, text=True, timeout=20)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip().splitlines()[0].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return None


def default_machine_name() -> str:
    """A meaningful asv machine name: ``gpu-<gpu>`` on a GPU machine, else
    ``cpu-<N>core-<cpu model>`` (e.g. ``cpu-2core-xeon``)."""
    gpu = gpu_name()
    if gpu:
        return "gpu-" + _slug(gpu.replace("NVIDIA", ""))
    from .environment import cpu_model

    return f"cpu-{os.cpu_count() or 1}core-{cpu_short_name(cpu_model())}"


def register_machine(name: str | None = None) -> str:
    """Write this machine into ~/.asv-machine.json under `name` with asv's own facts (os,
    arch, cpu, num_cpu, ram) -- what ``asv machine --yes`` records for the host name -- so
    that ``asv run --machine NAME`` needs no questions. Returns the name."""
    from asv import machine as asv_machine

    name = name or default_machine_name()
    info = asv_machine.Machine.get_defaults()
    gpu = gpu_name()
    if gpu:
        info["cpu"] = f"{info['cpu']} + {gpu}"
    info["machine"] = name
    asv_machine.MachineCollection.save(name, info)
    return name


def timings(path: str | os.PathLike) -> pd.Series:
    """Every measured ``time_*`` median of one asv result file, indexed by (benchmark, params)."""
    with open(path) as f:
        doc = json.load(f)
    values = {}
    for name in doc.get("results", {}):
        if not name.split(".")[-1].startswith("time_"):
            continue
        for combo, value, _ in _expand(doc, name):
            if _is_value(value):
                values[(name, ", ".join(str(c) for c in combo))] = float(value)
    return pd.Series(values, dtype=float)


def repeatability(path_a: str | os.PathLike, path_b: str | os.PathLike) -> pd.DataFrame:
    """Per case, the two runs' medians and their relative difference ``|a - b| / min(a, b)``.

    asv files a second run of one commit over the first, so copy the first run's file away
    before running again."""
    a, b = timings(path_a), timings(path_b)
    both = pd.DataFrame({"a_s": a, "b_s": b}).dropna()
    both["rel_diff"] = (both.a_s - both.b_s).abs() / both[["a_s", "b_s"]].min(axis=1)
    both.index.names = ["benchmark", "params"]
    return both.sort_values("rel_diff")
