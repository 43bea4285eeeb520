"""`build_report`: results in, ``index.html`` and its figures out."""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd

from ..loader import latest_runs, load_report
from .epochs import render_epochs
from .machines import render_side_by_side
from .page import render_group, render_page, render_section, shape_of, slug
from .plots import plot_section
from .verdict import add_judgement, verdicts


def build_report(results_paths_or_dirs=("results",), out_dir: str | os.PathLike = "html/report", *,
                 all_runs: bool = False) -> Path:
    """Write ``<out_dir>/index.html`` (+ PNG figures beside it); return its path.

    One part per device and mode holds every machine's run of it (the latest per machine and
    tool; ``all_runs``: every run), with the cases they share side by side. Then every epoch
    document (``*.pbepoch``), newest first, in a part of its own (`epochs`).
    """
    if isinstance(results_paths_or_dirs, (str, os.PathLike)):
        results_paths_or_dirs = [results_paths_or_dirs]
    df, epochs = load_report(results_paths_or_dirs)
    if not all_runs:
        df = latest_runs(df)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("plot-*.png"):  # figures of sections this report no longer has
        old.unlink()

    groups, nav = [], []
    parts = pd.DataFrame(columns=["device", "mode"])
    if not df.empty:
        df = add_judgement(df)
        parts = df[["device", "mode"]].drop_duplicates().sort_values(["device", "mode"])
    for device, mode in parts.itertuples(index=False):
        dm = df[(df["device"] == device) & (df["mode"] == mode)]
        sections = []
        for run in sorted(dm["run"].unique()):
            g = dm[dm["run"] == run]
            if not (g["status"] == "ok").any():
                continue
            anchor = slug(device, mode, run)
            title = f"{device.upper()} · {mode} · {run}"
            shape = shape_of(g)
            png = plot_section(g, title + (f" ({', '.join(shape)})" if shape else ""), out / f"plot-{anchor}.png")
            sections.append(render_section(g, anchor=anchor, title=title, png=png.name,
                                           verdicts=verdicts(g, device, mode)))
        if not sections:
            continue
        anchor = slug(device, mode)
        groups.append(render_group(device, mode, anchor=anchor, side_by_side=render_side_by_side(dm),
                                   sections=sections))
        runs = f" ({len(sections)} runs)" if len(sections) > 1 else ""
        nav.append(f'<a href="#{anchor}">{html.escape(device.upper())} {html.escape(mode)}{runs}</a>')
    epoch_part, documents = render_epochs(epochs, out)
    if documents:
        groups.append(epoch_part)
        nav.append(f'<a href="#epochs">Epochs{f" ({documents})" if documents > 1 else ""}</a>')

    index = out / "index.html"
    tmp = index.with_suffix(".html.tmp")  # a reader never sees a half-written page
    tmp.write_text(render_page(groups, nav, results_paths_or_dirs), encoding="utf-8")
    os.replace(tmp, index)
    return index
