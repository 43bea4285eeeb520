"""The report's figures: what a person compares strategies (and batching policies) by, at a glance.

A run's section (`plot_section`) has three panels: real tokens/s and speedup over ``padded``
against the batch's padding ratio (the question is how the gap grows with padding), and peak
memory per strategy (one batch above what was resident before it, the one meaning of
``peak_mem_bytes`` in padbench runs and asv results). An epoch document's section
(`plot_epochs`) has, per mode, the epoch time of every (policy, strategy) with its 95% interval
and the padding fraction of every policy. Unverified numbers (equivalence to the reference failed
or not checked) are drawn hollow, so a fast wrong answer cannot pass for a fast right one; a pair
that did not finish gets its status written where its bar would be, never a bar.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..judge import BASELINE, flag, number

# A fixed colour and marker per strategy, so that a strategy looks the same in every figure.
STRATEGY_STYLE = {
    "padded": ("#555555", "o"),
    "bucketed": ("#1f77b4", "s"),
    "nested_fastpath": ("#ff7f0e", "^"),
    "jagged": ("#2ca02c", "v"),
    "loop": ("#d62728", "D"),
    "packed": ("#9467bd", "P"),
    "flex": ("#8c564b", "X"),
    "varlen_attn": ("#e377c2", "*"),
    "rowpacked": ("#bcbd22", "h"),
}
_EXTRA_COLOURS = ["#17becf", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a"]


def _style(strategy: str, i: int):
    return STRATEGY_STYLE.get(strategy, (_EXTRA_COLOURS[i % len(_EXTRA_COLOURS)], "o"))


def _order(strategies) -> list[str]:
    return sorted(strategies, key=lambda s: (list(STRATEGY_STYLE).index(s) if s in STRATEGY_STYLE else 99, s))


def _rate_panels(ok: pd.DataFrame, strategies, ax_tps, ax_sp) -> None:
    for i, s in enumerate(strategies):
        g = ok[ok["strategy"] == s].sort_values("padding_ratio")
        colour, marker = _style(s, i)
        hollow = ~g["equivalent"].astype(bool)
        label = s + ("" if not hollow.any() else " (unverified)" if hollow.all() else " (partly unverified)")
        for ax, col in ((ax_tps, "tokens_per_s"), (ax_sp, "speedup")):
            y = pd.to_numeric(g[col], errors="coerce")
            if y.notna().sum() == 0:
                continue
            ax.plot(g["padding_ratio"], y, color=colour, alpha=0.5, linewidth=1)
            if (~hollow).any():
                ax.scatter(g["padding_ratio"][~hollow], y[~hollow], color=colour, marker=marker, s=46,
                           alpha=0.85, label=label if ax is ax_tps else None, zorder=3)
            if hollow.any():
                ax.scatter(g["padding_ratio"][hollow], y[hollow], facecolors="none", edgecolors=colour,
                           marker=marker, s=46, label=label if ax is ax_tps and not (~hollow).any() else None,
                           zorder=3)
    ax_tps.set_title("real tokens/s (higher is better)")
    ax_tps.set_xlabel("padding ratio of the batch")
    ax_tps.set_ylabel("real tokens / s")
    ax_sp.axhline(1.0, color="#999999", linestyle="--", linewidth=1)
    ax_sp.set_title(f"speedup over {BASELINE} (same run)")
    ax_sp.set_xlabel("padding ratio of the batch")
    ax_sp.set_ylabel(f"× {BASELINE}")
    for ax in (ax_tps, ax_sp):
        ax.grid(True, alpha=0.3)
        ax.set_xlim(-0.02, 1.0)
    ax_tps.legend(fontsize=8, loc="best")


def _memory_panel(ok: pd.DataFrame, strategies, ax) -> None:
    mem = ok.assign(peak_mem_bytes=pd.to_numeric(ok["peak_mem_bytes"], errors="coerce"))
    mem = mem[mem["peak_mem_bytes"].notna()]
    ax.set_title("peak memory of one batch (above resident before it)")
    if mem.empty:  # asv results from before track_peak_mem_bytes hold only the whole process's
        ax.text(0.5, 0.5, "no per-batch peak memory recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    table = mem.pivot_table(index="strategy", columns="distribution", values="peak_mem_bytes", aggfunc="max")
    table = table.reindex([s for s in strategies if s in table.index])
    dists = list(table.columns)
    width = 0.8 / max(1, len(dists))
    for j, dist in enumerate(dists):
        ax.bar([k + j * width for k in range(len(table))], table[dist] / 2**20, width=width, label=str(dist))
    ax.set_xticks([k + width * (len(dists) - 1) / 2 for k in range(len(table))])
    ax.set_xticklabels(table.index, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("peak MiB")
    ax.legend(fontsize=8, title="distribution", title_fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)


def plot_section(df: pd.DataFrame, title: str, path: Path) -> Path:
    """Draw one judged section (`verdict.add_judgement`) into the PNG at ``path``; return it."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the report is written by a command, often on a server
    import matplotlib.pyplot as plt

    ok = df[df["status"] == "ok"].copy()
    ok["padding_ratio"] = pd.to_numeric(ok["padding_ratio"], errors="coerce")
    strategies = _order(ok["strategy"].unique())
    fig, (ax_tps, ax_sp, ax_mem) = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    _rate_panels(ok, strategies, ax_tps, ax_sp)
    _memory_panel(ok, strategies, ax_mem)
    fig.suptitle(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------- epochs
def _epoch_panel(rows: pd.DataFrame, ax, baseline_s: float | None) -> None:
    """Horizontal bars: one per (policy, strategy), grouped by policy, the 95% interval as a whisker."""
    labels, strategies = [], _order(rows["strategy"].unique())
    times = [number(t) for t, st in zip(rows["epoch_s"], rows["status"]) if st == "ok" and number(t)]
    log = bool(times) and max(times) / min(times) > 30
    for y, r in enumerate(rows.to_dict("records")):
        labels.append(f"{r['policy']} · {r['strategy']}")
        t = number(r.get("epoch_s"))
        if r.get("status") != "ok" or t is None:
            ax.text(0.01, y, str(r.get("status") or "?"), transform=ax.get_yaxis_transform(), va="center",
                    fontsize=8, color="#a00", style="italic")
            continue
        colour, _ = _style(r["strategy"], strategies.index(r["strategy"]))
        verified = flag(r.get("equivalent")) is True
        ax.barh(y, t, color=colour if verified else "none", edgecolor=colour, hatch=None if verified else "//",
                height=0.7, alpha=0.85)
        lo, hi = number(r.get("epoch_s_low")), number(r.get("epoch_s_high"))
        if lo is not None and hi is not None and hi > lo:
            ax.errorbar(t, y, xerr=[[t - lo], [hi - t]], fmt="none", ecolor="#222", capsize=3, linewidth=1)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    if baseline_s:
        ax.axvline(baseline_s, color="#555", linestyle="--", linewidth=1, label=f"random · {BASELINE}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("seconds per epoch (95% interval; hatched: unverified)" + (", log scale" if log else ""))
    ax.grid(True, axis="x", alpha=0.3)


def plot_epochs(df: pd.DataFrame, title: str, path: Path) -> Path:
    """Draw one epoch document's rows (`padbench.loader.load_epochs`) into the PNG at ``path``; return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(df["mode"]))
    pairs = max(len(df[df["mode"] == m]) for m in modes)
    fig, axes = plt.subplots(len(modes), 2, figsize=(15, 1.2 + 0.28 * pairs * len(modes) + 0.6 * len(modes)),
                             squeeze=False, gridspec_kw={"width_ratios": [3, 1]}, constrained_layout=True)
    for (ax_t, ax_p), mode in zip(axes, modes):
        rows = df[df["mode"] == mode]
        base = rows[(rows["policy"] == "random") & (rows["strategy"] == BASELINE) & (rows["status"] == "ok")
                    & rows["equivalent"].map(lambda v: flag(v) is True)]
        _epoch_panel(rows, ax_t, number(base["epoch_s"].iloc[0]) if len(base) else None)
        ax_t.set_title(f"{mode}: one epoch per policy · strategy (shorter is better)", fontsize=10)
        pad = rows.drop_duplicates("policy")
        ax_p.barh(range(len(pad)), pd.to_numeric(pad["padding_fraction"], errors="coerce") * 100, color="#888")
        ax_p.set_yticks(range(len(pad)))
        ax_p.set_yticklabels(pad["policy"], fontsize=8)
        ax_p.invert_yaxis()
        ax_p.set_xlim(0, 100)
        ax_p.set_xlabel("padded tokens, % of the batches' tokens")
        ax_p.set_title("padding per policy", fontsize=10)
        ax_p.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
