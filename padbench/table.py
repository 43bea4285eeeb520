"""The comparison table: records with speedup over `padded`, ranked by real tokens/s."""

from __future__ import annotations

import pandas as pd

# Cases that share these were measured on the same batches and weights.
GROUP = ["device", "mode", "distribution", "batch_size", "max_len", "d_model", "nhead", "dim_feedforward", "num_layers", "dtype"]


def with_speedup(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``speedup_vs_padded``: tokens/s over `padded`'s in the same group (and file)."""
    df = df.copy()
    keys = [k for k in GROUP + ["source"] if k in df.columns]
    padded = df[(df["strategy"] == "padded") & (df["status"] == "ok")][keys + ["tokens_per_s"]]
    padded = padded.drop_duplicates(keys, keep="last").rename(columns={"tokens_per_s": "_padded_tps"})
    df = df.merge(padded, on=keys, how="left") if len(padded) else df.assign(_padded_tps=float("nan"))
    df["speedup_vs_padded"] = df["tokens_per_s"] / df["_padded_tps"]
    return df.drop(columns="_padded_tps")


def equivalent(df: pd.DataFrame, fwd_tol: float = 1e-4, grad_tol: float = 1e-3) -> pd.Series:
    """True where a record computes the reference function (float32 tolerances by default)."""
    fwd = df["max_rel_err"].fillna(float("inf")) <= fwd_tol
    grad = df["grad_rel_err"].isna() | (df["grad_rel_err"] <= grad_tol)
    grad = grad & ~((df["mode"] == "training") & df["grad_rel_err"].isna())
    return (df["status"] == "ok") & fwd & grad & (df["pad_invariant"] == True) & (df["nan_free"] == True)  # noqa: E712


def comparison(df: pd.DataFrame) -> pd.DataFrame:
    """One printable table: per (device, mode, distribution), strategies by tokens/s."""
    df = with_speedup(df)
    df["equivalent"] = equivalent(df)
    out = pd.DataFrame(
        {
            "device": df["device"],
            "mode": df["mode"],
            "distribution": df["distribution"],
            "pad": df["padding_ratio"].round(2),
            "strategy": df["strategy"],
            "status": df["status"],
            "ms": (df["time_s"] * 1e3).round(1),
            "tokens/s": df["tokens_per_s"].round(0),
            "vs padded": df["speedup_vs_padded"].round(2),
            "efficiency": df["efficiency"].round(3),
            "peak MB": (df["peak_mem_bytes"] / 2**20).round(1),
            "rel err": df["max_rel_err"].map(lambda v: f"{v:.1e}" if pd.notna(v) else ""),
            "grad err": df["grad_rel_err"].map(lambda v: f"{v:.1e}" if pd.notna(v) else ""),
            "equiv": df["equivalent"].map({True: "yes", False: "NO"}).where(df["status"] == "ok", ""),
        }
    )
    out["_rank"] = df["tokens_per_s"].fillna(-1)
    out = out.sort_values(["device", "mode", "distribution", "_rank"], ascending=[True, True, True, False])
    return out.drop(columns="_rank").reset_index(drop=True)
