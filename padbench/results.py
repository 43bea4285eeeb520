"""padbench's own results files: one JSON document per run, written atomically, read with json.

Files live in ``results/padbench/*.pbjson`` — not ``.json``, because asv walks ``results/`` for
``.json`` files and would take them for a machine's results.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PadbenchError

SCHEMA_VERSION = 1
KIND = "padbench.run"
SUFFIX = ".pbjson"
RESULTS_DIR = Path("results") / "padbench"


def new_document(environment: dict, config: dict) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment,
        "config": config,
        "records": [],
    }


def default_path(device: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return RESULTS_DIR / f"{stamp}-{device}{SUFFIX}"


def json_safe(value):
    """``value`` as plain JSON: NaN/Inf as null (JSON has neither, and ``json.dump`` would emit invalid
    JSON), numpy scalars as Python numbers (``json`` cannot write ``np.int64``)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write(path: str | Path, doc: dict) -> Path:
    """Write ``doc`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(json_safe(doc), fh, indent=1, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read(path: str | Path) -> dict:
    path = Path(path)
    try:
        with path.open() as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise PadbenchError(f"results file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise PadbenchError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise PadbenchError(f"{path} is not a padbench results file")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise PadbenchError(f"{path} has schema_version {doc.get('schema_version')}, "
                            f"this padbench reads {SCHEMA_VERSION}")
    return doc


def files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        return sorted(path.rglob(f"*{SUFFIX}"))
    return [path]


def load(path: str | Path = RESULTS_DIR) -> pd.DataFrame:
    """Every record of a results file (or of every file under a folder) as one DataFrame.

    Environment facts become ``env_*`` columns and the file name a ``source`` column.
    """
    frames = []
    for f in files(path):
        doc = read(f)
        df = pd.DataFrame(doc["records"])
        for key, value in doc["environment"].items():
            df[f"env_{key}"] = value
        df["created"] = doc["created"]
        df["source"] = str(f)
        frames.append(df)
    if not frames:
        raise PadbenchError(f"no padbench results (*{SUFFIX}) under {path}")
    return pd.concat(frames, ignore_index=True)
