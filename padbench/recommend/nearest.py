"""``--from-results``: rank the strategies of the measured case nearest to the user's lengths (nothing is measured).

Nearest: same device, mode and model, then closest padding ratio, mean length, batch size and
spread of the lengths (`distance`). A case's exact lengths are recomputed from its
distribution, batch size, max_len and seed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import judge
from ..errors import PadbenchError
from ..judge import BASELINE, number
from ..lengths import DISTRIBUTIONS, file_path, padding_ratio
from ..model import EncoderSpec, dtype_name
from ..runner import lengths_for
from .ranking import entry, rank
from .source import LengthSource

MODEL_COLUMNS = {"d_model": "d_model", "nhead": "nhead", "dim_feedforward": "dim_feedforward",
                 "num_layers": "num_layers", "activation": "activation", "norm_first": "norm_first", "dtype": "dtype"}


def _column(df, col):
    return df[col] if col in df else pd.Series(None, index=df.index, dtype=object)


def model_match(df, spec, model: dict | None = None):
    """Rows measured with ``spec``; a missing value (asv: the suite's default model) is the default.

    Another ``model`` (``{"model", "hf_config"}``) matches rows that name it: same source and
    configuration, same dtype; a spec model never matches another model's rows.
    """
    if model and model.get("model", "spec") != "spec":
        from ..models import describe

        desc = describe(model["model"], model.get("hf_config", ""), spec)
        dtype = _column(df, "dtype").map(dtype_name)
        keep = (_column(df, "model_source") == desc.source) & (_column(df, "model_config") == desc.config_text())
        return df[keep & (dtype == spec.as_dict()["dtype"])]
    df = df[_column(df, "model_kind").isna() | (_column(df, "model_kind") == "spec")]
    want = spec.as_dict()
    default = EncoderSpec().as_dict()
    keep = pd.Series(True, index=df.index)
    for col in MODEL_COLUMNS:
        vals = df[col] if col in df else pd.Series(None, index=df.index, dtype=object)
        vals = vals.where(vals.notna(), default[col])
        if col == "dtype":
            vals = vals.map(dtype_name)
        if col == "norm_first":
            vals = vals.map(lambda v: str(v).lower() in ("true", "1"))
        if col in ("d_model", "nhead", "dim_feedforward", "num_layers"):
            vals = pd.to_numeric(vals, errors="coerce")
        keep &= vals == want[col]
    return df[keep]


def case_features(row) -> dict:
    """Padding ratio, mean length, batch max and CV of one measured case (from its record)."""
    pad = number(row.get("padding_ratio"))
    bs = number(row.get("batch_size"))
    tokens = number(row.get("num_tokens"))
    feats = {"padding_ratio": pad, "batch_size": int(bs) if bs else None, "mean": None, "batch_max": None, "cv": None}
    if tokens and bs:
        feats["mean"] = tokens / bs
        if pad is not None and pad < 1:
            feats["batch_max"] = tokens / bs / (1 - pad)
    dist = str(row.get("distribution"))
    max_len = number(row.get("max_len"))
    seed = number(row.get("seed"))
    if bs and (dist in DISTRIBUTIONS or file_path(dist) is not None):
        try:  # the exact lengths are reproducible from (distribution, batch, max_len, seed)
            lens = np.asarray(lengths_for(dist, int(bs), int(max_len) if max_len else None, int(seed or 0)), float)
            if tokens and int(lens.sum()) != int(tokens):
                raise ValueError("the distribution draws other lengths now than when this case was measured")
            feats["cv"] = float(lens.std() / lens.mean())
            feats["mean"] = feats["mean"] or float(lens.mean())
            feats["batch_max"] = feats["batch_max"] or float(lens.max())
            if feats["padding_ratio"] is None:
                feats["padding_ratio"] = padding_ratio(lens)
        except (PadbenchError, OSError, ValueError):
            pass
    return feats


def distance(user: dict, case: dict) -> float:
    """How unlike the user's batches a measured case is (0 = alike; ~1 per notable difference).

    One unit each: 0.05 of padding ratio, a factor 1.5 in mean length, a factor 2 in batch size,
    0.25 of coefficient of variation.
    """
    d = 0.0
    if case["padding_ratio"] is None:
        d += 10.0
    else:
        d += abs(user["padding_ratio"] - case["padding_ratio"]) / 0.05
    if case.get("mean") and user.get("mean"):
        d += abs(math.log(user["mean"] / case["mean"])) / math.log(1.5)
    if case.get("batch_size") and user.get("batch_size"):
        d += abs(math.log(user["batch_size"] / case["batch_size"])) / math.log(2.0)
    if case.get("cv") is not None and user.get("cv") is not None:
        d += abs(user["cv"] - case["cv"]) / 0.25
    return d


def from_results(path: str, source: LengthSource, *, device: str, mode: str, spec, strategies=None,
                 model: dict | None = None) -> dict:
    """Rank strategies from the measured case nearest to the user's lengths: ``{"entries", "nearest"}``."""
    from ..loader import load

    df = load([path])
    spec_text = (f"d_model {spec.d_model}, nhead {spec.nhead}, ff {spec.dim_feedforward}, layers {spec.num_layers}, "
                 f"{spec.activation}{', norm_first' if spec.norm_first else ''}, {spec.as_dict()['dtype']}")
    same = df[(df["device"] == device) & (df["mode"] == mode)]
    same = model_match(same, spec, model) if len(same) else same
    if model and model.get("model", "spec") != "spec":
        spec_text = f"{model['model']} {model.get('hf_config', '')}".strip()
    if same.empty:
        have = sorted({f"{r.device} {r.mode}" for r in df[["device", "mode"]].itertuples()})
        raise PadbenchError(f"no results in {path} for {device} {mode} with model ({spec_text}); "
                            f"it holds {', '.join(have) or 'nothing usable'} (check --d-model/--nhead/--ff/--layers/"
                            "--dtype, or drop --from-results to measure)")
    same = same.copy()
    for col in ("batch_size", "max_len"):
        same[f"_{col}"] = pd.to_numeric(same[col], errors="coerce").fillna(-1)
    keys = ["run", "distribution", "_batch_size", "_max_len"]
    user = {**source.summary, "batch_size": source.batch_size}
    best = None
    for key, g in same.groupby(keys, sort=False, dropna=False):
        rows = g[g["padding_ratio"].notna()] if g["padding_ratio"].notna().any() else g
        feats = case_features(rows.iloc[0].to_dict())
        dist = distance(user, feats)
        when = pd.to_datetime(g["run_time"], utc=True, errors="coerce").max() if "run_time" in g else None
        cand = (dist, -(when.value if when is not None and not pd.isna(when) else 0), key, g, feats)
        if best is None or cand[:2] < best[:2]:
            best = cand
    dist, _, key, g, feats = best
    g = g.drop_duplicates("strategy", keep="last").copy()  # one row per strategy (the latest)
    if strategies:
        g = g[g["strategy"].isin(set(strategies) | {BASELINE})]
    g = judge.judge_frame(g)
    g["_speedup"] = judge.speedup(g, keys)
    entries = []
    for r in g.to_dict("records"):
        sp = number(r.get("speedup"))  # asv measured it side by side in one process: prefer it
        if sp is None:
            sp = number(r["_speedup"])
        status = r.get("status") or "error"
        if status == "ok" and not r["equivalent"]:
            status = "not equivalent"
        message = "; ".join(m for m in (str(r.get("message") or ""), r["why_not"] if status == "not equivalent"
                                        else "") if m)
        entries.append(entry(
            r["strategy"], tokens_per_s=number(r.get("tokens_per_s")),
            speedup_vs_padded=sp if status in ("ok", "not equivalent") else None,
            peak_mem_bytes=number(r.get("peak_mem_bytes")), efficiency=number(r.get("efficiency")),
            equivalent=bool(r["equivalent"]) if r.get("status") == "ok" else None, status=status, message=message,
            max_rel_err=number(r.get("max_rel_err")), grad_rel_err=number(r.get("grad_rel_err")),
            draws=1 if r.get("status") == "ok" else 0, prepare_s=number(r.get("prepare_s")),
        ))
    run, distribution, bs, ml = key
    nearest = {
        "run": str(run), "distribution": str(distribution), "batch_size": int(bs) if bs >= 0 else None,
        "max_len": int(ml) if ml >= 0 else None, "padding_ratio": feats["padding_ratio"], "mean": feats["mean"],
        "batch_max": feats["batch_max"], "cv": feats["cv"], "distance": dist,
    }
    return {"entries": rank(entries), "nearest": nearest}

