"""The one loader of results: padbench run files and asv results as rows of one DataFrame, and
``padbench epoch`` documents as rows of another.

A person points the report (or `recommend --from-results`) at a folder without knowing which tool
wrote what is in it, so every kind is read here, labelled by run and origin, and given the same
columns: every later step can then treat a row the same way whatever produced it. Run files and
asv results hold cases (one batch each: `load`); an epoch document (``*.pbepoch``, kind
``padbench.epoch``) holds one row per (policy, strategy) of a whole epoch (`load_epochs`); the
report reads both at once (`load_report`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import asv_results, results
from .errors import PadbenchError

# Columns every later step reads; a source that did not record one gets it empty.
COLUMNS = ("padding_ratio", "tokens_per_s", "time_s", "peak_mem_bytes", "max_rel_err", "grad_rel_err",
           "efficiency", "speedup", "pad_invariant", "nan_free", "dtype", "batch_size", "max_len",
           "time_spread", "fastpath_taken", "message", "process_peak_bytes")


# `padbench epoch --out` documents: their kind and file suffix (not .json: asv walks results/).
EPOCH_KIND = "padbench.epoch"
EPOCH_SUFFIX = ".pbepoch"
# Columns of an epoch row every later step reads; a document that did not record one gets it empty.
EPOCH_COLUMNS = ("policy", "strategy", "status", "message", "device", "mode", "dtype", "steps", "sequences",
                 "real_tokens", "padded_tokens", "padding_fraction", "shape", "shuffled", "epoch_s", "epoch_s_low",
                 "epoch_s_high", "tokens_per_s", "measured_batches", "estimated", "peak_mem_bytes", "equivalent",
                 "why_not", "max_rel_err", "grad_rel_err", "batch_size", "max_tokens", "row_len")


def _files(p: Path, suffix: str) -> list[Path]:
    if p.is_file():
        return [p] if p.suffix == suffix else []
    return sorted(p.rglob(f"*{suffix}")) if p.is_dir() else []


def _padbench_files(p: Path) -> list[Path]:
    return _files(p, results.SUFFIX)


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


def read_epoch(path: str | Path) -> dict:
    """One ``padbench epoch`` document (`results.write` wrote it), checked for kind and schema."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise PadbenchError(f"epoch document not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise PadbenchError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != EPOCH_KIND or not isinstance(doc.get("rows"), list):
        raise PadbenchError(f"{path} is not a padbench epoch document")
    if doc.get("schema_version") != results.SCHEMA_VERSION:
        raise PadbenchError(f"{path} has schema_version {doc.get('schema_version')}, "
                            f"this padbench reads {results.SCHEMA_VERSION}")
    return doc


def _epoch_frame(f: Path) -> pd.DataFrame:
    """An epoch document's rows, with its environment (``env_*``), its settings (``config_*``: lists
    and dicts as they are) and whether the run was interrupted."""
    doc = read_epoch(f)
    df = pd.DataFrame(doc["rows"])
    for key, value in (doc.get("environment") or {}).items():
        df[f"env_{key}"] = [value] * len(df)
    for key, value in (doc.get("config") or {}).items():
        df[f"config_{key}"] = [value] * len(df)
    df["interrupted"] = bool(doc.get("interrupted"))
    df["created"] = doc.get("created")
    df["source"] = str(f)
    df["kind"] = "epoch"
    df["run"] = f"padbench epoch {f.name}"
    df["run_time"] = pd.to_datetime(df["created"], utc=True, errors="coerce")
    df["origin"] = "padbench on " + pd.Series(df.get("env_hostname", "?"), index=df.index, dtype=object).astype(str)
    return df


def _scan(paths) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """(frames of run files and asv results, frames of epoch documents) found at ``paths``."""
    frames, epochs = [], []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise PadbenchError(f"no such results file or folder: {p}")
        pb_files, epoch_files = _padbench_files(p), _files(p, EPOCH_SUFFIX)
        for f in pb_files + epoch_files:
            if f.resolve() in seen:  # a file reached through two of `paths` counts once
                continue
            seen.add(f.resolve())
            if f.suffix == results.SUFFIX:
                frames.append(_padbench_frame(f))
            else:
                epochs.append(_epoch_frame(f))
        asv_df = _asv_frame(p)
        if asv_df is not None and not asv_df.empty:
            frames.append(asv_df)
        if not pb_files and not epoch_files and asv_df is None:
            raise PadbenchError(f"{p}: neither a padbench run file (*{results.SUFFIX}), an epoch document "
                                f"(*{EPOCH_SUFFIX}) nor asv results")
    return frames, epochs


def _runs(frames: list[pd.DataFrame]) -> pd.DataFrame:
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for col in COLUMNS:
        if col not in df:
            df[col] = None
    return df


def _epochs(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for col in (*EPOCH_COLUMNS, "run", "run_time", "origin", "source", "kind", "interrupted"):
        if col not in df:
            df[col] = None
    return df


def load(paths=("results",)) -> pd.DataFrame:
    """All rows of padbench run files and asv results found at `paths` (files or folders).

    Adds ``run`` (one label per run file / asv result file), ``run_time``, ``origin`` (what
    machine and which tool produced it) and ``kind`` ("padbench" or "asv").
    """
    frames, _ = _scan(paths)
    if not frames:
        raise PadbenchError("no results found in " + ", ".join(map(str, paths)))
    return _runs(frames)


def load_epochs(paths=("results",)) -> pd.DataFrame:
    """Every row of the epoch documents (``*.pbepoch``) found at `paths`; empty when there are none.

    Adds ``run`` ("padbench epoch FILE"), ``run_time``, ``origin``, ``kind`` ("epoch"), ``source``,
    ``interrupted`` and the document's ``env_*`` and ``config_*``.
    """
    return _epochs(_scan(paths)[1])


def load_report(paths=("results",)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`load`'s rows, `load_epochs`'s rows) in one pass; either may be empty, not both."""
    frames, epochs = _scan(paths)
    if not frames and not any(not f.empty for f in epochs):
        raise PadbenchError("no results found in " + ", ".join(map(str, paths)))
    return _runs(frames), _epochs(epochs)


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
