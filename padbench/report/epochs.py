"""The report's epoch part: per ``padbench epoch`` document, how long a whole epoch takes per
data-loader policy and model-side strategy.

One section per document (rows from `padbench.loader.load_epochs`): when and where it ran and
with what settings, the verdict (the shortest epoch that computes the reference function, chosen
by `padbench.recommend.epoch.choose`, the rule ``recommend --epoch`` follows), the figure
(`plots.plot_epochs`), a table of epoch time with its 95% interval per policy and strategy with
each policy's padding fraction and shuffling beside it, and every pair's details. A pair that
did not finish (interrupted, error, oom, unsupported) shows its status, never a time: an
interrupted pair's estimate from the batches it had timed is not an epoch time. Pairs the
document's settings planned but it holds no row of (the run stopped before them) are named.
"""

from __future__ import annotations

import html
import re
import struct
from pathlib import Path

import pandas as pd

from ..epoch.policies import POLICIES, strategies_for
from ..epoch.table import BASELINE
from ..judge import flag, number
from ..recommend.epoch import choose
from ..recommend.epoch_output import advice
from .page import ENV_LABELS, fmt, slug

# (heading, column, format) of the table of every pair; the timed columns are blank unless status is ok.
COLUMNS = [("policy", "policy", "text"), ("strategy", "strategy", "text"), ("status", "status", "text"),
           ("steps", "steps", "int"), ("padding", "padding_fraction", "pct1"), ("epoch s", "epoch_s", "s"),
           ("95% low", "epoch_s_low", "s"), ("95% high", "epoch_s_high", "s"),
           ("vs random+padded", "vs_baseline", "x"), ("real tokens/s", "tokens_per_s", "int"),
           ("peak MiB", "peak_mem_bytes", "mib"), ("batches timed", "measured_batches", "int"),
           ("fwd rel. err", "max_rel_err", "err"), ("grad rel. err", "grad_rel_err", "err"),
           ("equivalent", "equivalent", "text"), ("shuffled", "shuffled", "text"), ("note", "note", "text")]
TIMED = {"epoch_s", "epoch_s_low", "epoch_s_high", "vs_baseline", "tokens_per_s", "peak_mem_bytes",
         "measured_batches"}
CELL_CLASS = {"text": "l"}


def _cell(v, kind: str) -> str:
    f = number(v)
    if kind == "s":
        return "" if f is None else (f"{f:,.1f}" if f >= 10 else f"{f:.3g}")
    if kind == "pct1":
        return "" if f is None else f"{100 * f:.1f}%"
    return fmt(v, kind)


def _config(g: pd.DataFrame, key: str, default=None):
    col = f"config_{key}"
    if col not in g:
        return default
    v = g[col].iloc[0]
    return default if v is None or (isinstance(v, float) and pd.isna(v)) else v


def not_reached(g: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(mode, policy, strategy) the document's settings planned and it holds no row of."""
    policies, strategies = _config(g, "policies", []), _config(g, "strategies", [])
    modes = _config(g, "modes", list(dict.fromkeys(g["mode"])))
    have = set(zip(g["mode"], g["policy"], g["strategy"]))
    return [(m, p, s) for m in modes for p in policies for s in strategies_for(p, strategies) if (m, p, s) not in have]


def _rows(g: pd.DataFrame, mode: str) -> list[dict]:
    rows = g[g["mode"] == mode].to_dict("records")
    for r in rows:
        r["equivalent"] = flag(r.get("equivalent"))
    return rows


def _code(text: str) -> str:
    """Plain-text advice (backticks for names) as HTML."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def verdict(g: pd.DataFrame, mode: str) -> tuple[str, dict]:
    """One mode's verdict (HTML) and `choose`'s result."""
    rows = _rows(g, mode)
    choice = choose(rows, mode=mode)
    name = Path(str(_config(g, "lengths_file") or "these lengths")).name
    count, batch = _config(g, "sequences"), _config(g, "batch_size")
    facts = ", ".join(x for x in (f"{int(count):,} sequences" if count else "", f"B={batch}" if batch else "") if x)
    device = str(g["device"].dropna().iloc[0]).upper() if g["device"].notna().any() else "?"
    where = f"On `{name}`" + (f" ({facts})" if facts else "") + f" on {device} {mode}"
    return "<br>".join(_code(line) for line in advice(choice, where=where)), choice


def _pivot(g: pd.DataFrame, mode: str, choice: dict, missing: set) -> str:
    """Epoch time per policy (rows) and strategy (columns), with each policy's padding and shuffling."""
    rows = _rows(g, mode)
    strategies = list(dict.fromkeys([*_config(g, "strategies", []), *(r["strategy"] for r in rows)]))
    by_pair = {(r["policy"], r["strategy"]): r for r in rows}
    policies = [p for p in POLICIES if any(r["policy"] == p for r in rows) or any(k[1] == p for k in missing)]
    strategies = [s for s in strategies if any(s in strategies_for(p, [s]) for p in policies)]
    best = choice["chosen"]
    head = ('<th class="l">policy</th><th>padding</th><th>steps</th><th class="l">shuffled</th>'
            + "".join(f"<th>{html.escape(s)}</th>" for s in strategies))
    body = []
    for p in policies:
        first = next((r for r in rows if r["policy"] == p), {})
        cells = [f'<td class="l">{html.escape(p)}</td>', f"<td>{_cell(first.get('padding_fraction'), 'pct1')}</td>",
                 f"<td>{_cell(first.get('steps'), 'int')}</td>",
                 f'<td class="l">{html.escape(str(first.get("shuffled") or ""))}</td>']
        for s in strategies:
            r = by_pair.get((p, s))
            if r is None:
                text = "not reached" if (mode, p, s) in missing else ""
                cells.append(f'<td class="skip">{text}</td>')
            elif r.get("status") != "ok" or number(r.get("epoch_s")) is None:
                why = html.escape(str(r.get("message") or ""), quote=True)
                cells.append(f'<td class="status" title="{why}">{html.escape(str(r.get("status")))}</td>')
            else:
                lo, hi = number(r.get("epoch_s_low")), number(r.get("epoch_s_high"))
                span = f"<br><small>{_cell(lo, 's')}–{_cell(hi, 's')}</small>" if lo is not None and hi is not None \
                    and hi > lo else ""
                win = best is not None and (best["policy"], best["strategy"]) == (p, s)
                tag = "" if r["equivalent"] is True else ' <span class="tag">unverified</span>'
                cls = "win" if win else ("" if r["equivalent"] is True else "unverified")
                cells.append(f'<td class="{cls}">{_cell(r["epoch_s"], "s")}{tag}{span}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _details(g: pd.DataFrame, mode: str) -> str:
    """Every pair of one mode, in the document's order."""
    rows = _rows(g, mode)
    base = next((r for r in rows if (r["policy"], r["strategy"]) == BASELINE and r.get("status") == "ok"
                 and r["equivalent"] is True), None)
    head = "".join(f'<th class="{CELL_CLASS.get(k, "")}">{html.escape(t)}</th>' for t, _, k in COLUMNS)
    body = []
    for r in rows:
        ok = r.get("status") == "ok" and number(r.get("epoch_s")) is not None
        r["vs_baseline"] = number(base["epoch_s"]) / number(r["epoch_s"]) if ok and base else None
        r["note"] = (r.get("why_not") or "") if ok else (r.get("message") or "")
        cells = []
        for _, col, kind in COLUMNS:
            v = r.get(col)
            if col == "equivalent":
                v = ("yes" if v is True else "unverified") if ok else ""
            elif col in TIMED and not ok:
                v = None
            cells.append(f'<td class="{CELL_CLASS.get(kind, "")}">{_cell(v, kind)}</td>')
        cls = "skip" if not ok else ("" if r["equivalent"] is True else "bad")
        body.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, from its header."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    return struct.unpack(">II", head[16:24])


def _settings(g: pd.DataFrame) -> str:
    spec = _config(g, "spec", {}) or {}
    parts = [f"lengths {html.escape(str(_config(g, 'lengths_file', '?')))}"]
    for label, key in (("sequences", "sequences"), ("batch", "batch_size"), ("max tokens", "max_tokens"),
                       ("row length", "row_len"), ("seed", "seed")):
        v = _config(g, key)
        if v is not None:
            parts.append(f"{label} {html.escape(str(v))}")
    if spec:
        parts.append("model d_model {d_model}, nhead {nhead}, ff {dim_feedforward}, layers {num_layers}, "
                     "{dtype}".format(**{k: html.escape(str(spec.get(k, "?"))) for k in
                                         ("d_model", "nhead", "dim_feedforward", "num_layers", "dtype")}))
    parts.append("every batch timed" if _config(g, "measure_all") else
                 f"a sample of {_config(g, 'sample') or 'about 2√steps (at least 8)'} batches timed per pair")
    return " · ".join(parts)


def render_epoch_section(g: pd.DataFrame, *, anchor: str, png: Path) -> str:
    """One epoch document: settings, what is missing, verdicts, the figure, the tables."""
    run = str(g["run"].iloc[0])
    when = pd.to_datetime(g["run_time"].iloc[0], utc=True, errors="coerce")
    when_s = "" if pd.isna(when) else when.strftime("%Y-%m-%d %H:%M UTC")
    env = [f"{label}: {html.escape(str(g[col].dropna().iloc[0]))}"
           for label, col in ENV_LABELS if col in g and g[col].notna().any()]
    missing = not_reached(g)
    warn = []
    if bool(g["interrupted"].iloc[0]):
        warn.append("The run was interrupted (Ctrl-C): unfinished pairs are marked <i>interrupted</i>.")
    if missing:
        names = ", ".join(f"<code>{html.escape(p)}</code> + <code>{html.escape(s)}</code>"
                          + (f" ({html.escape(m)})" if len({x[0] for x in missing}) > 1 else "")
                          for m, p, s in missing)
        warn.append(f"Partial: {len(missing)} of the pairs its settings planned have no row (the run stopped "
                    f"before them): {names}.")
    modes = list(dict.fromkeys(g["mode"]))
    parts = []
    for mode in modes:
        text, choice = verdict(g, mode)
        parts.append(f"<h4>{html.escape(mode)}</h4><ul class=\"verdicts\"><li>{text}</li></ul>"
                     f'<div class="scroll">{_pivot(g, mode, choice, set(missing))}</div>')
    details = "".join((f"<h5>{html.escape(m)}</h5>" if len(modes) > 1 else "")
                      + f'<div class="scroll">{_details(g, m)}</div>' for m in modes)
    width, height = png_size(png)
    devices = ", ".join(sorted({str(d).upper() for d in g["device"].dropna()}))
    return f"""
<section id="{anchor}" class="epoch">
<h3 class="run">{html.escape(run)} <small class="meta">{html.escape(devices)} · {html.escape(", ".join(modes))} ·
{len(g)} pairs</small></h3>
<p class="meta">{html.escape(when_s)} {' · '.join(env)}</p>
<p class="meta">{_settings(g)}</p>
{''.join(f'<p class="warn">{w}</p>' for w in warn)}
{''.join(parts)}
<img class="plot" src="{png.name}" alt="epoch time per policy and strategy, and padding per policy: {html.escape(run)}"
 width="{width}" height="{height}">
<h4>Every pair</h4>
{details}
<p class="meta">Epoch time: the estimate of <code>padbench epoch</code> (a stratified sample of the epoch's batches
timed, the rest predicted by a cost model fitted to them; the interval is a 95% bootstrap; low = high when every batch
was timed); padding: padded tokens over all tokens of the loader's batches (counted, not timed); shuffled: what stays
random from epoch to epoch. A pair that did not finish shows its status (hover for why), never a time.</p>
</section>"""


def render_epochs(epochs: pd.DataFrame, out: Path) -> tuple[str, int]:
    """The epoch part of the page (its figures written into ``out``) and the number of documents."""
    from .plots import plot_epochs

    if epochs.empty:
        return "", 0
    order = epochs.assign(_t=pd.to_datetime(epochs["run_time"], utc=True, errors="coerce"))
    runs = order.sort_values(["_t", "run"], ascending=[False, True])["run"].drop_duplicates()
    sections = []
    for run in runs:
        g = epochs[epochs["run"] == run].reset_index(drop=True)
        anchor = slug("epoch", run)
        png = plot_epochs(g, f"{run}: one epoch per policy and strategy", out / f"plot-{anchor}.png")
        sections.append(render_epoch_section(g, anchor=anchor, png=png))
    intro = ('<p class="meta">From <code>padbench epoch</code> documents (<code>*.pbepoch</code>): how long one whole '
             "epoch of a dataset's lengths takes per data-loader policy (random, grouped, token_budget, rows, varlen) "
             "and model-side strategy, its padding, and whether each strategy computes the reference function. Only "
             "an equivalent pair measured in full can be the shortest; <code>padbench recommend --epoch</code> "
             "chooses by the same rule.</p>")
    return (f'<div class="group" id="epochs"><h2>Whole epochs: batching policy × strategy</h2>{intro}'
            f'{"".join(sections)}</div>'), len(sections)

