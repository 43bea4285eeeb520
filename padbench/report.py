"""A static HTML report that helps a person choose a batching strategy.

`build_report(paths, out_dir="html/report")` reads padbench run files (``*.pbjson``, via
`padbench.results.load`) and asv results (``results/<machine>/*.json``, via
`padbench.asv_results.load`), and writes ``<out_dir>/index.html`` with, for each device and
mode (and each run that measured them):

* a matplotlib figure (PNG beside the page): real tokens/s and speedup over ``padded`` against
  the batch's padding ratio, one series per strategy; peak memory per strategy;
* a table of every case: time, tokens/s, speedup, efficiency, peak memory, forward and gradient
  errors against the float64 reference, the pad checks, and whether it counts as equivalent;
* a written verdict per distribution, computed from the data: the fastest strategy among
  those that compute the reference function, and how much faster than ``padded`` it is.
  A strategy whose results differ from the reference never wins.

The page has no scripts and loads nothing from the network: it works offline and from file://.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd



def _table_tolerances() -> tuple[float, float]:
    """float32 (forward, gradient) tolerances of `padbench.table.equivalent`, so that the
    report and the CLI's table call the same cases equivalent."""
    import inspect

    try:
        from .table import equivalent

        params = inspect.signature(equivalent).parameters
        return float(params["fwd_tol"].default), float(params["grad_tol"].default)
    except (ImportError, KeyError, TypeError, ValueError):
        return 1e-4, 1e-3


# Equivalence tolerances (normwise relative error against the float64 reference), by dtype.
_F32_FWD, _F32_GRAD = _table_tolerances()
FWD_TOL = {"float32": _F32_FWD, "float64": 1e-9, "bfloat16": 2e-2, "float16": 5e-3}
GRAD_TOL = {"float32": _F32_GRAD, "float64": 1e-8, "bfloat16": 5e-2, "float16": 2e-2}
BASELINE = "padded"

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
}
_EXTRA_COLOURS = ["#17becf", "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78"]


# --------------------------------------------------------------------------- loading
def load(paths=("results",)) -> pd.DataFrame:
    """All rows of padbench run files and asv results found at `paths` (files or folders).

    Adds ``run`` (one label per run file / asv result file), ``run_time``, ``origin`` (what
    machine and which tool produced it) and ``kind`` ("padbench" or "asv").
    """
    from . import asv_results, results
    from .errors import PadbenchError

    frames = []
    seen_pb: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise PadbenchError(f"no such results file or folder: {p}")
        pb_files = [p] if p.is_file() and p.suffix == results.SUFFIX else (
            sorted(p.rglob(f"*{results.SUFFIX}")) if p.is_dir() else [])
        for f in pb_files:
            if f.resolve() in seen_pb:
                continue
            seen_pb.add(f.resolve())
            df = results.load(f)
            df["kind"] = "padbench"
            df["run"] = f"padbench run {f.name}"
            df["run_time"] = pd.to_datetime(df["created"], utc=True, errors="coerce")
            host = df["env_hostname"] if "env_hostname" in df else "?"
            df["origin"] = "padbench on " + pd.Series(host, index=df.index).astype(str)
            frames.append(df)
        machine_dir = p.is_dir() and (p / "machine.json").exists()  # results/<machine>/
        asv_dir = machine_dir or (p.is_dir() and asv_results.is_asv_results_dir(p))
        asv_df = None
        if asv_dir:
            asv_df = asv_results.load(p.parent if machine_dir else p)
            if machine_dir and not asv_df.empty:
                asv_df = asv_df[asv_df["env_machine"] == p.name].reset_index(drop=True)
        elif p.is_file() and p.suffix == ".json" and p.name != "machine.json":
            asv_df = asv_results.load_file(p)
        if asv_df is not None and not asv_df.empty:
            asv_df["kind"] = "asv"
            asv_df["run"] = ("asv " + asv_df["env_machine"].astype(str) + " @ "
                             + asv_df["env_git_commit"].astype(str).str[:8])
            asv_df["run_time"] = asv_df["env_date"]
            asv_df["origin"] = "asv on " + asv_df["env_machine"].astype(str)
            frames.append(asv_df)
        if not pb_files and not asv_dir and not (p.is_file() and p.suffix == ".json"):
            raise PadbenchError(f"{p}: neither a padbench run file (*{results.SUFFIX}) nor asv results")
    if not frames:
        raise PadbenchError("no results found in " + ", ".join(map(str, paths)))
    df = pd.concat(frames, ignore_index=True)
    for col in ("padding_ratio", "tokens_per_s", "time_s", "peak_mem_bytes", "max_rel_err", "grad_rel_err",
                "efficiency", "speedup", "pad_invariant", "nan_free", "dtype", "batch_size", "max_len",
                "time_spread", "fastpath_taken", "message"):
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


# --------------------------------------------------------------------------- judging
def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def _truthy(v):
    """True/False for booleans and 1/0, None for missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, str):
        return v.lower() in ("true", "1", "yes")
    return bool(v)


def equivalence(row) -> tuple[bool, str]:
    """(does this case compute the reference function?, why not) for one row."""
    if row.get("status") != "ok":
        return False, f"status {row.get('status')}"
    dtype = str(row.get("dtype") or "float32").replace("torch.", "")
    fwd_tol, grad_tol = FWD_TOL.get(dtype, 1e-4), GRAD_TOL.get(dtype, 1e-3)
    fwd = _num(row.get("max_rel_err"))
    if math.isnan(fwd):
        return False, "forward error not measured"
    if fwd > fwd_tol:
        return False, f"forward rel. error {fwd:.1e} > {fwd_tol:.0e}"
    if row.get("mode") == "training":
        grad = _num(row.get("grad_rel_err"))
        if math.isnan(grad):
            return False, "gradient error not measured"
        if grad > grad_tol:
            return False, f"gradient rel. error {grad:.1e} > {grad_tol:.0e}"
    if _truthy(row.get("pad_invariant")) is False:
        return False, "output changes when pad contents change"
    if _truthy(row.get("nan_free")) is False:
        return False, "NaN (or error) with an empty sequence"
    if _truthy(row.get("pad_invariant")) is None or _truthy(row.get("nan_free")) is None:
        return False, "pad checks not recorded"
    return True, ""


def add_judgement(df: pd.DataFrame) -> pd.DataFrame:
    """Adds ``equivalent``, ``why_not`` and ``speedup`` (over padded in the same run and case)."""
    df = df.copy()
    judged = [equivalence(r) for r in df.to_dict("records")]
    df["equivalent"] = [j[0] for j in judged]
    df["why_not"] = [j[1] for j in judged]
    keys = ["run", "device", "mode", "distribution"] + [k for k in ("batch_size", "max_len") if df[k].notna().any()]
    def key_of(frame):
        return ["|".join(map(str, t)) for t in frame[keys].itertuples(index=False, name=None)]

    base = df[(df["strategy"] == BASELINE) & (df["status"] == "ok")]
    base_tps = dict(zip(key_of(base), base["tokens_per_s"]))
    computed = [(_num(t) / _num(base_tps[k])) if k in base_tps else math.nan
                for k, t in zip(key_of(df), df["tokens_per_s"])]
    # asv measured the speedup itself (both timings in one process): prefer it when present.
    tracked = pd.to_numeric(df["speedup"], errors="coerce") if "speedup" in df else pd.Series(math.nan, index=df.index)
    df["speedup"] = tracked.where(tracked.notna(), pd.Series(computed, index=df.index, dtype=float))
    return df


@dataclass
class Verdict:
    distribution: str
    text: str
    winner: str | None
    speedup: float | None


def _pct(x) -> str:
    return "?" if math.isnan(_num(x)) else f"{100 * _num(x):.0f}%"


def verdicts(df: pd.DataFrame, device: str, mode: str) -> list[Verdict]:
    """One verdict per distribution of an already judged (`add_judgement`) section."""
    out = []
    for dist, g in df.groupby("distribution", sort=True):
        pad = _pct(g["padding_ratio"].dropna().iloc[0]) if g["padding_ratio"].notna().any() else "?"
        where = f"On <b>{html.escape(str(dist))}</b> lengths (padding {pad}) on {device.upper()} {mode}"
        ok = g[g["status"] == "ok"]
        eq = ok[ok["equivalent"]].copy()
        eq["_tps"] = pd.to_numeric(eq["tokens_per_s"], errors="coerce")
        eq = eq[eq["_tps"].notna()]
        base = ok[ok["strategy"] == BASELINE]
        if eq.empty:
            out.append(Verdict(dist, f"{where}, no strategy was measured to compute the reference function; "
                                     "nothing to recommend.", None, None))
            continue
        best = eq.sort_values("_tps", ascending=False).iloc[0]
        name = best["strategy"]
        tps = best["_tps"]
        faster_bad = ok[(~ok["equivalent"]) & (pd.to_numeric(ok["tokens_per_s"], errors="coerce") > tps)]
        excluded = ""
        if len(faster_bad):
            names = ", ".join(f"<code>{html.escape(s)}</code>" for s in faster_bad["strategy"])
            excluded = f" Faster but not equivalent to the reference, so not counted: {names}."
        if base.empty or not bool(base["equivalent"].iloc[0]):
            what = "was not measured" if base.empty else "does not match the reference"
            text = (f"{where}, <code>{html.escape(name)}</code> is the fastest strategy that computes the "
                    f"reference function ({tps:,.0f} real tokens/s); <code>{BASELINE}</code> {what}.")
            out.append(Verdict(dist, text + excluded, name, None))
            continue
        sp = _num(best["speedup"])
        if name == BASELINE or math.isnan(sp) or sp <= 1.0:
            text = (f"{where}, <code>{BASELINE}</code> is as fast as anything that computes the same function "
                    f"({_num(base['tokens_per_s'].iloc[0]):,.0f} real tokens/s): keep it.")
            out.append(Verdict(dist, text + excluded, BASELINE, 1.0))
            continue
        text = (f"{where}, <code>{html.escape(name)}</code> is <b>{sp:.2f}×</b> faster than "
                f"<code>{BASELINE}</code> at equal results ({tps:,.0f} vs "
                f"{_num(base['tokens_per_s'].iloc[0]):,.0f} real tokens/s).")
        out.append(Verdict(dist, text + excluded, name, sp))
    return out


# --------------------------------------------------------------------------- plotting
def _style(strategy: str, i: int):
    return STRATEGY_STYLE.get(strategy, (_EXTRA_COLOURS[i % len(_EXTRA_COLOURS)], "o"))


def plot_section(df: pd.DataFrame, title: str, path: Path) -> Path:
    """Three panels: tokens/s and speedup over padded vs padding ratio; peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[df["status"] == "ok"].copy()
    ok["padding_ratio"] = pd.to_numeric(ok["padding_ratio"], errors="coerce")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    ax_tps, ax_sp, ax_mem = axes
    strategies = sorted(ok["strategy"].unique(), key=lambda s: (list(STRATEGY_STYLE).index(s)
                                                               if s in STRATEGY_STYLE else 99, s))
    for i, s in enumerate(strategies):
        g = ok[ok["strategy"] == s].sort_values("padding_ratio")
        colour, marker = _style(s, i)
        hollow = ~g["equivalent"].astype(bool)
        label = s + ("" if not hollow.any() else " (not equivalent)" if hollow.all() else " (partly not equiv.)")
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

    mem = ok.copy()
    mem["peak_mem_bytes"] = pd.to_numeric(mem["peak_mem_bytes"], errors="coerce")
    mem = mem[mem["peak_mem_bytes"].notna()]
    if len(mem):
        table = mem.pivot_table(index="strategy", columns="distribution", values="peak_mem_bytes", aggfunc="max")
        table = table.reindex([s for s in strategies if s in table.index])
        dists = list(table.columns)
        width = 0.8 / max(1, len(dists))
        for j, dist in enumerate(dists):
            xs = [k + j * width for k in range(len(table))]
            ax_mem.bar(xs, table[dist] / 2**20, width=width, label=str(dist))
        ax_mem.set_xticks([k + width * (len(dists) - 1) / 2 for k in range(len(table))])
        ax_mem.set_xticklabels(table.index, rotation=30, ha="right", fontsize=8)
        ax_mem.set_ylabel("MiB")
        ax_mem.legend(fontsize=8, title="distribution", title_fontsize=8)
        ax_mem.grid(True, axis="y", alpha=0.3)
    else:
        ax_mem.text(0.5, 0.5, "no memory measured", ha="center", va="center", transform=ax_mem.transAxes)
        ax_mem.set_xticks([])
        ax_mem.set_yticks([])
    ax_mem.set_title("peak memory per batch")
    fig.suptitle(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- HTML
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1400px;
     padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{margin-top:2.4rem;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9rem} .verdicts li{margin:.3rem 0}
table{border-collapse:collapse;font-size:.82rem;margin:.8rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right;white-space:nowrap}
th{background:#f4f4f4} td.l,th.l{text-align:left}
tr.bad td{color:#a00} tr.skip td{color:#999}
img.plot{max-width:100%;height:auto;border:1px solid #eee}
code{background:#f4f4f4;padding:0 .2rem;border-radius:3px}
nav a{margin-right:1rem} .scroll{overflow-x:auto}
"""


def _fmt(v, kind: str) -> str:
    f = _num(v)
    if kind == "text":
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else html.escape(str(v))
    if math.isnan(f):
        return ""
    if kind == "ms":
        return f"{1e3 * f:,.1f}"
    if kind == "int":
        return f"{f:,.0f}"
    if kind == "x":
        return f"{f:.2f}×"
    if kind == "pct":
        return f"{100 * f:.0f}%"
    if kind == "mib":
        return f"{f / 2**20:,.1f}"
    if kind == "err":
        return f"{f:.1e}"
    if kind == "eff":
        return f"{f:.3f}"
    if kind == "bool":
        return "yes" if f else "no"
    return html.escape(str(v))


def _table(df: pd.DataFrame) -> str:
    cols = [("distribution", "distribution", "text"), ("padding", "padding_ratio", "pct"),
            ("strategy", "strategy", "text"), ("status", "status", "text"), ("ms / batch", "time_s", "ms"),
            ("real tokens/s", "tokens_per_s", "int"), (f"vs {BASELINE}", "speedup", "x"),
            ("efficiency", "efficiency", "eff"), ("peak MiB", "peak_mem_bytes", "mib"),
            ("fwd rel. err", "max_rel_err", "err"), ("grad rel. err", "grad_rel_err", "err"),
            ("pad-invariant", "pad_invariant", "bool"), ("NaN-free", "nan_free", "bool"),
            ("equivalent", "equivalent", "text"), ("note", "why_not", "text")]
    head = "".join(f'<th class="{"l" if k == "text" else ""}">{html.escape(t)}</th>' for t, _, k in cols)
    rows = []
    order = df.assign(_t=pd.to_numeric(df["tokens_per_s"], errors="coerce").fillna(-1)).sort_values(
        ["distribution", "_t"], ascending=[True, False])
    for r in order.to_dict("records"):
        cells = []
        for _, col, kind in cols:
            v = r.get(col)
            if col == "equivalent":
                v = ("yes" if v else "NO") if r.get("status") == "ok" else ""
            if col == "why_not":
                v = r.get("message") if r.get("status") != "ok" else (v or "")
            if kind == "bool" and _truthy(v) is None:
                v = None
            cells.append(f'<td class="{"l" if kind == "text" else ""}">{_fmt(v, kind)}</td>')
        cls = "skip" if r.get("status") != "ok" else ("" if r.get("equivalent") else "bad")
        rows.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _note(g: pd.DataFrame) -> str:
    if (g.get("kind") == "asv").any():
        return ('<p class="meta">asv results: "ms / batch" is asv\'s <code>time_step</code> benchmark '
                '(one process per case; a single sample in <code>--quick</code> runs); tokens/s, speedup and '
                'efficiency were measured together in one process by the suite\'s <code>setup_cache</code>; '
                'peak MiB is the process\'s peak RSS while one batch runs (CPU) or CUDA max allocated.</p>')
    return ('<p class="meta">padbench run: every number of a row comes from one <code>measure_case</code>; '
            'peak MiB is measured in a fresh process.</p>')


def _slug(*parts) -> str:
    s = "-".join(str(p) for p in parts)
    return "".join(c if c.isalnum() else "-" for c in s).strip("-").lower()


def build_report(results_paths_or_dirs=("results",), out_dir: str | os.PathLike = "html/report", *,
                 all_runs: bool = False) -> Path:
    """Write ``<out_dir>/index.html`` (+ PNG figures beside it); return its path.

    ``all_runs``: one section per run instead of only the latest run per origin.
    """
    if isinstance(results_paths_or_dirs, (str, os.PathLike)):
        results_paths_or_dirs = [results_paths_or_dirs]
    df = load(results_paths_or_dirs)
    if not all_runs:
        df = latest_runs(df)
    df = add_judgement(df)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("plot-*.png"):
        old.unlink()

    sections, nav = [], []
    keys = df[["device", "mode", "run"]].drop_duplicates().sort_values(["device", "mode", "run"])
    for device, mode, run in keys.itertuples(index=False):
        g = df[(df["device"] == device) & (df["mode"] == mode) & (df["run"] == run)]
        if not (g["status"] == "ok").any():
            continue
        anchor = _slug(device, mode, run)
        first = g.iloc[0]
        shape = []
        if pd.notna(first.get("batch_size")):
            shape.append(f"batch {int(_num(first['batch_size']))}")
        if pd.notna(first.get("max_len")) and not math.isnan(_num(first.get("max_len"))):
            shape.append(f"max_len {int(_num(first['max_len']))}")
        when = pd.to_datetime(first.get("run_time"), utc=True, errors="coerce")
        when_s = "" if pd.isna(when) else when.strftime("%Y-%m-%d %H:%M UTC")
        title = f"{device.upper()} · {mode} · {run}"
        png = plot_section(g, title + (f" ({', '.join(shape)})" if shape else ""), out / f"plot-{anchor}.png")
        vs = verdicts(g, device, mode)
        env = []
        for label, col in (("machine", "env_machine"), ("host", "env_hostname"), ("CPU", "env_cpu_model"),
                           ("device", "env_device_name"), ("torch", "env_torch_version"),
                           ("threads", "env_threads"), ("commit", "env_git_commit")):
            if col in g and g[col].notna().any():
                env.append(f"{label}: {html.escape(str(g[col].dropna().iloc[0]))}")
        sections.append(f"""
<section id="{anchor}">
<h2>{html.escape(device.upper())} · {html.escape(mode)} <small class="meta">{html.escape(run)}</small></h2>
<p class="meta">{html.escape(when_s)} {' · '.join(env)}{(' · ' + ', '.join(shape)) if shape else ''}</p>
<h3>Verdict</h3>
<ul class="verdicts">{''.join(f'<li>{v.text}</li>' for v in vs)}</ul>
<img class="plot" src="{png.name}" alt="tokens/s and speedup over padded vs padding ratio, and peak memory: {html.escape(title)}" width="1350" height="414">
<h3>Every case</h3>
<div class="scroll">{_table(g)}</div>
{_note(g)}
</section>""")
        nav.append(f'<a href="#{anchor}">{html.escape(device.upper())} {html.escape(mode)} ({html.escape(run)})</a>')

    if not sections:
        body = "<p>No measured (status ok) case in these results.</p>"
    else:
        body = "\n".join(sections)
    sources = ", ".join(html.escape(str(p)) for p in results_paths_or_dirs)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>padbench report: which batching strategy?</title>
<style>{CSS}</style></head>
<body>
<h1>padbench: which way of batching variable-length sequences?</h1>
<p class="meta">Built from {sources}. For each device and mode: real tokens per second (only real tokens
count) and speedup over <code>{BASELINE}</code> (pad to the longest, mask) against the batch's padding
ratio, peak memory, and whether each strategy computes the same function as the float64 per-sequence
reference. A strategy counts as <i>equivalent</i> when its forward relative error is at most
{FWD_TOL['float32']:.0e} (float32; gradients {GRAD_TOL['float32']:.0e} in training), its output does not
change when the contents of pads change, and an empty sequence gives no NaN. Only equivalent strategies
can win a verdict; hollow markers in the plots are not equivalent.</p>
<nav>{''.join(nav)}</nav>
{body}
</body></html>
"""
    index = out / "index.html"
    tmp = index.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, index)
    return index


# --------------------------------------------------------------------------- asv dashboard
def _git_subjects(repo: Path | None = None) -> dict[str, str]:
    import subprocess

    try:
        out = subprocess.run(["git", "log", "--all", "--format=%H%x00%s"], cwd=repo, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    if out.returncode != 0:
        return {}
    return dict(line.split("\0", 1) for line in out.stdout.splitlines() if "\0" in line)


def _default_to_a_real_environment(index: dict) -> dict:
    """Order ``index.json`` so that the UI's default selection names graphs that exist.

    asv-tachyon starts from the first value of every parameter, and skips null ones. An
    environment from ``asv run -E existing`` has null for every matrix requirement, so with
    both kinds of results the first values mixed two environments into a combination asv
    never published (every graph request then fails). Environments with no null come first,
    and each parameter's list starts with that environment's value.
    """
    envs = index.get("graph_param_list") or []
    if not envs:
        return index
    envs = sorted(envs, key=lambda e: sum(v is None for v in e.values()))
    index["graph_param_list"] = envs
    first = envs[0]
    for key, values in (index.get("params") or {}).items():
        if key in first and first[key] in values:
            index["params"][key] = [first[key]] + [v for v in values if v != first[key]]
    return index


def install_dashboard(html_dir: str | os.PathLike = "html", repo: str | os.PathLike | None = None) -> Path:
    """Make an ``asv publish`` output work offline; returns its index.html.

    asv 0.6's page loads jQuery/flot/bootstrap from CDNs. This copies the self-contained
    asv-tachyon UI over it (``asv-tachyon install``: index.html + assets/, asv's index.json
    and graphs/ kept, the old page kept as index.legacy.html), then writes the optional data
    files the UI asks for, so that no request fails: ``commits.json`` (commit subjects),
    ``profiles.json`` and ``regressions-ignore.json``.
    """
    import contextlib
    import io
    import json

    from .errors import PadbenchError

    html_dir = Path(html_dir)
    index_json = html_dir / "index.json"
    if not index_json.exists():
        raise PadbenchError(f"no {index_json}: run `asv publish` first (or pass its --html-dir)")
    try:
        from asv_tachyon import cli as tachyon
    except ImportError:
        raise PadbenchError("asv-tachyon is not installed (pip install asv-tachyon): "
                            "asv's own dashboard needs CDNs and is blank offline") from None
    with contextlib.redirect_stdout(io.StringIO()):
        tachyon.cmd_install(html_dir, backup=True)

    index = _default_to_a_real_environment(json.loads(index_json.read_text()))
    index_json.write_text(json.dumps(index))
    rev_to_hash = {str(k): v for k, v in (index.get("revision_to_hash") or {}).items()}
    subjects = _git_subjects(Path(repo) if repo else None)
    by_hash = {h: subjects.get(h, h[:8]) for h in rev_to_hash.values()}
    commits = {"by_revision": {r: by_hash[h] for r, h in rev_to_hash.items()}, "by_hash": by_hash}
    (html_dir / "commits.json").write_text(json.dumps(commits, indent=1))
    if not (html_dir / "profiles.json").exists():
        (html_dir / "profiles.json").write_text(json.dumps({"paths": {}}))
    if not (html_dir / "regressions-ignore.json").exists():
        (html_dir / "regressions-ignore.json").write_text("[]")
    # The UI fetches a graph for every (benchmark, machine/env) pair; asv writes none where a
    # benchmark has no data point there (e.g. every CUDA benchmark on a CPU machine: all
    # skipped). An empty series says the same thing without a failed request. Likewise the
    # graph view asks for per-revision timing samples (samples/<graph path>), which asv
    # 0.6 does not publish: an empty object means "no samples".
    try:
        from asv.graph import Graph
    except ImportError:
        Graph = None
    if Graph is not None:
        for name in index.get("benchmarks", {}):
            for params in index.get("graph_param_list", []):
                rel = Path(Graph.get_file_path(params, name) + ".json")
                for path, empty in ((html_dir / rel, "[]"),
                                    (html_dir / "samples" / Path(*rel.parts[1:]), "{}")):
                    if not path.exists():
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_text(empty)
    return html_dir / "index.html"
