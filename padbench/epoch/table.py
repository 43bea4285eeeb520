"""The epoch table `padbench epoch` prints: one line per (policy, strategy), shortest epoch first."""

from __future__ import annotations

import pandas as pd

BASELINE = ("random", "padded")  # what most training code does: shuffle, pad to the batch max


def speedups(rows: list[dict]) -> list[float | None]:
    """Each row's epoch time relative to random + padded of the same mode (above 1: shorter epoch)."""
    base = {r["mode"]: r["epoch_s"] for r in rows
            if (r["policy"], r["strategy"]) == BASELINE and r["status"] == "ok" and r["epoch_s"]}
    return [base[r["mode"]] / r["epoch_s"] if r["mode"] in base and r.get("epoch_s") else None for r in rows]


def epoch_table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    num = lambda c: pd.to_numeric(df[c], errors="coerce")  # noqa: E731
    out = pd.DataFrame({
        "mode": df["mode"],
        "policy": df["policy"],
        "strategy": df["strategy"],
        "status": df["status"],
        "steps": df["steps"],
        "padding": num("padding_fraction").round(3),
        "epoch s": num("epoch_s").round(2),
        "low": num("epoch_s_low").round(2),
        "high": num("epoch_s_high").round(2),
        "vs random+padded": pd.Series(speedups(rows), dtype=float).round(2),
        "tokens/s": num("tokens_per_s").round(0),
        "peak MiB": (num("peak_mem_bytes") / 2**20).round(1),
        "equiv": df["equivalent"].map({True: "yes", False: "NO"}).fillna(""),
        "timed": df["measured_batches"],
        "shuffled": df["shuffled"],
    })
    out["_rank"] = num("epoch_s").fillna(float("inf"))
    return out.sort_values(["mode", "_rank"]).drop(columns="_rank").reset_index(drop=True)
