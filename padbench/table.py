"""The comparison table `padbench run` prints: records judged, with speedup over `padded`, ranked by real tokens/s."""

from __future__ import annotations

import pandas as pd

from . import judge

# Cases that share these were measured on the same batches and weights.
GROUP = ["device", "mode", "distribution", "batch_size", "max_len", "d_model", "nhead", "dim_feedforward", "num_layers",
         "activation", "norm_first", "dtype", "source", "model_kind", "model_source", "model_config", "num_params"]


def _num(col: pd.Series) -> pd.Series:
    return pd.to_numeric(col, errors="coerce")


def comparison(df: pd.DataFrame) -> pd.DataFrame:
    """One printable table: per (device, mode, distribution), strategies by tokens/s; failed cases kept."""
    df = judge.judge_frame(df)
    df["speedup_vs_padded"] = judge.speedup(df, GROUP)
    ok = df["status"] == "ok"
    out = pd.DataFrame(
        {
            "device": df["device"],
            "mode": df["mode"],
            "distribution": df["distribution"],
            "pad": _num(df["padding_ratio"]).round(2),
            "strategy": df["strategy"],
            "status": df["status"],
            "ms": (_num(df["time_s"]) * 1e3).round(1),
            "tokens/s": _num(df["tokens_per_s"]).round(0),
            "vs padded": _num(df["speedup_vs_padded"]).round(2),
            # A Hugging Face model's own padded call is the baseline its users run today.
            **({"vs hf_sdpa": judge.speedup(df, GROUP, baseline="hf_sdpa").round(2)}
               if (df["strategy"] == "hf_sdpa").any() else {}),
            "efficiency": _num(df["efficiency"]).round(3),
            "peak MiB": (_num(df["peak_mem_bytes"]) / 2**20).round(1),
            "rel err": df["max_rel_err"].map(lambda v: f"{v:.1e}" if pd.notna(v) else ""),
            "grad err": df["grad_rel_err"].map(lambda v: f"{v:.1e}" if pd.notna(v) else ""),
            "equiv": df["equivalent"].map({True: "yes", False: "NO"}).where(ok, ""),
        }
    )
    out["_rank"] = _num(df["tokens_per_s"]).fillna(-1)
    out = out.sort_values(["device", "mode", "distribution", "_rank"], ascending=[True, True, True, False])
    return out.drop(columns="_rank").reset_index(drop=True)
