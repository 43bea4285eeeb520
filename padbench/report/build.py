"""`build_report`: results in, ``index.html`` and its figures out."""

from __future__ import annotations

import html
import os
from pathlib import Path

from ..loader import latest_runs, load
from .page import render_page, render_section, shape_of, slug
from .plots import plot_section
from .verdict import add_judgement, verdicts


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
    for old in out.glob("plot-*.png"):  # figures of sections this report no longer has
        old.unlink()

    sections, nav = [], []
    keys = df[["device", "mode", "run"]].drop_duplicates().sort_values(["device", "mode", "run"])
    for device, mode, run in keys.itertuples(index=False):
        g = df[(df["device"] == device) & (df["mode"] == mode) & (df["run"] == run)]
        if not (g["status"] == "ok").any():
            continue
        anchor = slug(device, mode, run)
        title = f"{device.upper()} · {mode} · {run}"
        shape = shape_of(g)
        png = plot_section(g, title + (f" ({', '.join(shape)})" if shape else ""), out / f"plot-{anchor}.png")
        sections.append(render_section(g, anchor=anchor, title=title, png=png.name,
                                       verdicts=verdicts(g, device, mode)))
        nav.append(f'<a href="#{anchor}">{html.escape(device.upper())} {html.escape(mode)} ({html.escape(run)})</a>')

    index = out / "index.html"
    tmp = index.with_suffix(".html.tmp")  # a reader never sees a half-written page
    tmp.write_text(render_page(sections, nav, results_paths_or_dirs), encoding="utf-8")
    os.replace(tmp, index)
    return index
