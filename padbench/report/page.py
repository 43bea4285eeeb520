"""HTML of the report: the table of every case, one section per device/mode/run, and the page.

The page has no scripts and loads nothing from the network, so it opens offline and from
file://, the way results are often looked at (copied off a GPU machine).
"""

from __future__ import annotations

import html
import math

import pandas as pd

from .. import judge, repro
from ..judge import BASELINE

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
h3.run{margin-top:1.8rem} td.repro{white-space:normal;min-width:30rem;font-size:.72rem}
td.win{font-weight:bold} td.unverified{color:#a00}
.tag{font-size:.7rem;border:1px solid #a00;border-radius:3px;padding:0 .2rem;margin-left:.2rem}
td.skip{color:#999} td.status{color:#a00;font-style:italic} p.warn{color:#a00}
"""

# (heading, column, format) of the table of every case.
COLUMNS = [("distribution", "distribution", "text"), ("padding", "padding_ratio", "pct"),
           ("strategy", "strategy", "text"), ("status", "status", "text"), ("ms / batch", "time_s", "ms"),
           ("real tokens/s", "tokens_per_s", "int"), (f"vs {BASELINE}", "speedup", "x"),
           ("efficiency", "efficiency", "eff"), ("peak MiB", "peak_mem_bytes", "mib"),
           ("process peak MiB", "process_peak_bytes", "mib"),
           ("fwd rel. err", "max_rel_err", "err"), ("grad rel. err", "grad_rel_err", "err"),
           ("pad-invariant", "pad_invariant", "bool"), ("NaN-free", "nan_free", "bool"),
           ("equivalent", "equivalent", "text"), ("note", "why_not", "text"), ("reproduce", "repro", "code")]

_NUMBER_FORMATS = {
    "ms": lambda f: f"{1e3 * f:,.1f}", "int": lambda f: f"{f:,.0f}", "x": lambda f: f"{f:.2f}×",
    "pct": lambda f: f"{100 * f:.0f}%", "mib": lambda f: f"{f / 2**20:,.1f}", "err": lambda f: f"{f:.1e}",
    "eff": lambda f: f"{f:.3f}",
}


def _non_finite(v) -> str:
    """An infinite value is a result worth showing (an error that blew up); a missing one is not."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(f) else str(f)


def fmt(v, kind: str) -> str:
    """One table cell's text (HTML-escaped)."""
    if kind == "code":
        return "" if not v else f"<code>{html.escape(str(v))}</code>"
    if kind == "text":
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else html.escape(str(v))
    if kind == "bool":
        b = judge.flag(v)
        return "" if b is None else ("yes" if b else "no")
    f = judge.number(v)
    if f is None:
        return _non_finite(v)
    return _NUMBER_FORMATS[kind](f) if kind in _NUMBER_FORMATS else html.escape(str(v))


CELL_CLASS = {"text": "l", "code": "l repro"}
# Shown only in sections that recorded them (asv's whole-process memory).
OPTIONAL = {"process_peak_bytes"}


def render_table(df: pd.DataFrame) -> str:
    """Every case of a judged section, fastest first within each distribution."""
    columns = [c for c in COLUMNS if c[1] not in OPTIONAL or (c[1] in df and df[c[1]].notna().any())]
    head = "".join(f'<th class="{CELL_CLASS.get(k, "")}">{html.escape(t)}</th>' for t, _, k in columns)
    rows = []
    order = df.assign(_t=pd.to_numeric(df["tokens_per_s"], errors="coerce").fillna(-1)).sort_values(
        ["distribution", "_t"], ascending=[True, False])
    for r in order.to_dict("records"):
        measured = r.get("status") == "ok"
        cells = []
        for _, col, kind in columns:
            v = r.get(col)
            if col == "equivalent":
                v = ("yes" if v else "unverified") if measured else ""
            elif col == "why_not":
                v = (v or "") if measured else r.get("message")
            elif col == "repro":
                v = repro.from_record(r)
            cells.append(f'<td class="{CELL_CLASS.get(kind, "")}">{fmt(v, kind)}</td>')
        cls = "skip" if not measured else ("" if r.get("equivalent") else "bad")
        rows.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# What "peak MiB" means, the same for padbench runs and asv results (MiB = 2^20 bytes).
PEAK_MEANING = ("peak MiB is one batch's peak memory above what was resident before it (CPU: peak RSS in a "
                "fresh process; CUDA: max allocated above what was allocated), in MiB (2<sup>20</sup> bytes)")


def _note(g: pd.DataFrame) -> str:
    """Where the numbers of a section come from: asv and padbench measure them differently."""
    if (g.get("kind") == "asv").any():
        return ('<p class="meta">asv results: "ms / batch" is asv\'s <code>time_step</code> benchmark '
                '(one process per case; a single sample in <code>--quick</code> runs); tokens/s, speedup and '
                'efficiency were measured together in one process by the suite\'s <code>setup_cache</code>. '
                + PEAK_MEANING + ' (the suite\'s <code>track_peak_mem_bytes</code>, measured as '
                '<code>padbench run</code> does); process peak MiB is asv\'s <code>peakmem_step</code> (CPU: the '
                'whole process\'s peak RSS, torch and model included) or <code>track_cuda_peak_bytes</code> (CUDA: '
                'everything allocated, weights included), not comparable between strategies.</p>')
    return ('<p class="meta">padbench run: every number of a row comes from one <code>measure_case</code>. '
            + PEAK_MEANING + '.</p>')


def slug(*parts) -> str:
    """An HTML anchor / file name from any labels."""
    s = "-".join(str(p) for p in parts)
    return "".join(c if c.isalnum() else "-" for c in s).strip("-").lower()


ENV_LABELS = (("machine", "env_machine"), ("host", "env_hostname"), ("CPU", "env_cpu_model"),
              ("device", "env_device_name"), ("torch", "env_torch_version"), ("threads", "env_threads"),
              ("commit", "env_git_commit"))


def shape_of(g: pd.DataFrame) -> list[str]:
    """The batch shape a section measured, e.g. ["batch 32", "max_len 256"]."""
    first = g.iloc[0]
    shape = []
    for label, col in (("batch", "batch_size"), ("max_len", "max_len")):
        v = judge.number(first.get(col))
        if v is not None:
            shape.append(f"{label} {int(v)}")
    return shape


def render_section(g: pd.DataFrame, *, anchor: str, title: str, png: str, verdicts) -> str:
    """One device/mode/run: when and where it ran, the verdicts, the figure and the table."""
    device, mode, run = (str(g.iloc[0][k]) for k in ("device", "mode", "run"))
    when = pd.to_datetime(g.iloc[0].get("run_time"), utc=True, errors="coerce")
    when_s = "" if pd.isna(when) else when.strftime("%Y-%m-%d %H:%M UTC")
    env = [f"{label}: {html.escape(str(g[col].dropna().iloc[0]))}"
           for label, col in ENV_LABELS if col in g and g[col].notna().any()]
    shape = shape_of(g)
    alt = f"tokens/s and speedup over padded vs padding ratio, and peak memory: {html.escape(title)}"
    return f"""
<section id="{anchor}">
<h3 class="run">{html.escape(run)} <small class="meta">{html.escape(device.upper())} · {html.escape(mode)}</small></h3>
<p class="meta">{html.escape(when_s)} {' · '.join(env)}{(' · ' + ', '.join(shape)) if shape else ''}</p>
<h4>Verdict</h4>
<ul class="verdicts">{''.join(f'<li>{v.text}</li>' for v in verdicts)}</ul>
<img class="plot" src="{png}" alt="{alt}" width="1350" height="414">
<h4>Every case</h4>
<div class="scroll">{render_table(g)}</div>
{_note(g)}
</section>"""


def render_group(device: str, mode: str, *, anchor: str, side_by_side: str, sections: list[str]) -> str:
    """One device and mode: every machine's runs of it, and their shared cases side by side."""
    return (f'<div class="group" id="{anchor}"><h2>{html.escape(device.upper())} · {html.escape(mode)}</h2>'
            f'{side_by_side}{"".join(sections)}</div>')


def render_page(sections: list[str], nav: list[str], sources) -> str:
    """The whole page around the sections, with the rule a strategy is judged by."""
    body = "\n".join(sections) if sections else "<p>No measured (status ok) case in these results.</p>"
    fwd, grad = judge.tolerances("float32")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>padbench report: which batching strategy?</title>
<style>{CSS}</style></head>
<body>
<h1>padbench: which way of batching variable-length sequences?</h1>
<p class="meta">Built from {", ".join(html.escape(str(p)) for p in sources)}. For each device and mode: real
tokens per second (only real tokens count) and speedup over <code>{BASELINE}</code> (pad to the longest, mask)
against the batch's padding ratio, peak memory, and whether each strategy computes the same function as the
float64 per-sequence reference. A strategy counts as <i>equivalent</i> when its forward relative error is at
most {fwd:.0e} (float32; gradients {grad:.0e} in training; reduced-precision dtypes have tolerances of their
own), its output does not change when the contents of pads change, and an empty sequence gives no NaN. A
number whose equivalence failed or was not checked is <i>unverified</i>: it never wins a verdict, and is drawn
hollow in the plots. Every machine in the results is on this page: one part per device and mode, the machines'
shared cases side by side; <code>padbench epoch</code> documents, whole epochs per batching policy, follow.</p>
<nav>{''.join(nav)}</nav>
{body}
</body></html>
"""
