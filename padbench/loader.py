"""The one loader of results: padbench run files and asv results, as rows of one DataFrame.

A person points the report (or `recommend --from-results`) at a folder without knowing which tool
wrote what is in it, so both kinds are read here, labelled by run and origin, and given the same
columns: every later step can then treat a row the same way whatever produced it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import asv_results, results
from .errors import PadbenchError

# Columns every later step reads; a source that did not record one gets it empty.
COLUMNS = ("padding_ratio", "tokens_per_s", "time_s", "peak_mem_bytes", "max_rel_err", "grad_rel_err",
           "efficiency", "speedup", "pad_invariant", "nan_free", "dtype", "batch_size", "max_len",
           "time_spread", "fastpath_taken", "message", "process_peak_bytes")


def _padbench_files(p: Path) -> list[Path]:
    if p.is_file():
        return [p] if p.suffix == results.SUFFIX else []
    return sorted(p.rglob(f"*{results.SUFFIX}")) if p.is_dir() else []


def _padbench_frame(f: Path) -> pd.DataFrame:
    df = results.load(f)
    df["kind"] = "padbench"
    df["run"] = f"padbench run {f.name}"
    df["run_time"] = pd.to_datetime(df["created"], utc=True, errors="coerce")
    host = df.get("env_hostname", "?")
    df["origin"] = "padbench on " + pd.Series(host, index=df.index).astype(str)
    return df


def _asv_frame(p: Path) -> pd.DataFrame | None:
    """asv rows at ``p`` (a results folder, one machine's folder, or one result file); None if it holds none."""
    machine_dir = p.is_dir() and (p / "machine.json").exists()
    if machine_dir:
        df = asv_results.load(p.parent)
        if not df.empty:
            df = df[df["env_machine"] == p.name].reset_index(drop=True)
    elif p.is_dir() and asv_results.is_asv_results_dir(p):
        df = asv_results.load(p)
    elif p.is_file() and p.suffix == ".json" and p.name != "machine.json":
        df = asv_results.load_file(p)
    else:
        return None
    if df.empty:
        return df
    df["kind"] = "asv"
    df["run"] = "asv " + df["env_machine"].astype(str) + " @ " + df["env_git_commit"].astype(str).str[:8]
    df["run_time"] = df["env_date"]
    df["origin"] = "asv on " + df["env_machine"].astype(str)
    return df


def load(paths=("results",)) -> pd.DataFrame:
    """All rows of padbench run files and asv results found at `paths` (files or folders).

    Adds ``run`` (one label per run file / asv result file), ``run_time``, ``origin`` (what
    machine and which tool produced it) and ``kind`` ("padbench" or "asv").
    """
    frames = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise PadbenchError(f"no such results file or folder: {p}")
        pb_files = _padbench_files(p)
        for f in pb_files:
            if f.resolve() not in seen:  # a file reached through two of `paths` counts once
                seen.add(f.resolve())
                frames.append(_padbench_frame(f))
        asv_df = _asv_frame(p)
        if asv_df is not None and not asv_df.empty:
            frames.append(asv_df)
        if not pb_files and asv_df is None:
            raise PadbenchError(f"{p}: neither a padbench run file (*{results.SUFFIX}) nor asv results")
    if not frames:
        raise PadbenchError("no results found in " + ", ".join(map(str, paths)))
    df = pd.concat(frames, ignore_index=True)
    for col in COLUMNS:
        if col not in df:
            df[col] = None
    return df


def latest_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Per origin (tool + machine), device and mode, keep only the most recent run."""
    if df.empty:
        return df
    df = df.copy()
    df["_t"] = pd.to_datetime(df["run_time"], utc=True, errors="coerce").fillna(pd.Timestamp(0, tz="UTC"))
    ok = df[df["status"] == "ok"]
    base = ok if len(ok) else df
    latest = base.groupby(["origin", "device", "mode"])["_t"].max().rename("_latest").reset_index()
    df = df.merge(latest, on=["origin", "device", "mode"], how="inner")
    df = df[df["_t"] == df["_latest"]]
    return df.drop(columns=["_t", "_latest"]).reset_index(drop=True)
