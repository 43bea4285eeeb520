"""Machines side by side: the cases several runs (machines, tools) of one device and mode share.

A reader with results from several machines asks which machine runs a case fastest. Cases match
as in `padbench.compare` (same strategy, batch, model and dtype, whatever file they came from).
A number whose equivalence failed or was not checked is shown as *unverified* and never wins:
a fast wrong answer is not a fast machine.
"""

from __future__ import annotations

import html

import pandas as pd

from ..compare import KEY, key_text
from .page import fmt


def side_by_side(g: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """(one row per case that ≥ 2 runs measured, the runs) for a judged device/mode slice.

    Columns: the case keys, per run ``<run>`` (tokens/s) and ``<run> ok`` (verified), and
    ``fastest`` (the run with the most real tokens/s among verified numbers, or None).
    """
    ok = g[(g["status"] == "ok") & pd.to_numeric(g["tokens_per_s"], errors="coerce").notna()].copy()
    if ok.empty:
        return pd.DataFrame(), []
    for k in KEY:
        ok[k] = ok[k].map(key_text) if k in ok else ""
    ok["_tps"] = pd.to_numeric(ok["tokens_per_s"], errors="coerce")
    ok = ok.drop_duplicates([*KEY, "run"], keep="last")
    runs = sorted(ok["run"].unique())
    shared = ok.groupby(KEY)["run"].transform("nunique") >= 2
    ok = ok[shared]
    if ok.empty:
        return pd.DataFrame(), runs
    rows = []
    for key, cases in ok.groupby(KEY, sort=True):
        row = dict(zip(KEY, key))
        for r in cases.to_dict("records"):
            row[r["run"]], row[r["run"] + " ok"] = r["_tps"], bool(r["equivalent"])
            row[r["run"] + " why"] = r.get("why_not") or ""
        verified = cases[cases["equivalent"].astype(bool)]
        row["fastest"] = verified.loc[verified["_tps"].idxmax(), "run"] if len(verified) else None
        rows.append(row)
    present = [r for r in runs if r in ok["run"].values]
    return pd.DataFrame(rows), present


def _table(table: pd.DataFrame, runs: list[str], origin: dict) -> str:
    extra = [k for k in KEY if k not in ("distribution", "strategy") and table[k].nunique() > 1]
    keys = ("distribution", "strategy", *extra)
    head = "".join(f'<th class="l">{html.escape(k)}</th>' for k in keys)
    head += "".join(f"<th>{html.escape(r)}<br><small>{html.escape(str(origin.get(r, '')))}</small></th>"
                    for r in runs)
    head += '<th class="l">fastest (verified)</th>'
    body = []
    for r in table.sort_values(["distribution", "strategy"]).to_dict("records"):
        cells = [f'<td class="l">{html.escape(str(r[k]))}</td>' for k in keys]
        for run in runs:
            if r[run + " ok"]:
                cls = ' class="win"' if r["fastest"] == run else ""
                cells.append(f"<td{cls}>{fmt(r[run], 'int')}</td>")
            else:
                why = html.escape(r[run + " why"], quote=True)
                cells.append(f'<td class="unverified" title="{why}">{fmt(r[run], "int")} '
                             f'<span class="tag">unverified</span></td>')
        cells.append(f'<td class="l">{html.escape(r["fastest"] or "none verified")}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def render_side_by_side(g: pd.DataFrame) -> str:
    """HTML of `side_by_side`: one table per set of runs that share cases ("" when none do)."""
    table, runs = side_by_side(g)
    if table.empty:
        return ""
    origin = g.drop_duplicates("run").set_index("run")["origin"].to_dict() if "origin" in g else {}
    table["_runs"] = [tuple(r for r in runs if pd.notna(row.get(r))) for row in table.to_dict("records")]
    tables = [_table(t, list(who), origin) for who, t in table.groupby("_runs", sort=True)]
    return ('<h3>Machines side by side</h3><p class="meta">Real tokens/s of each case that several runs below '
            'measured; the fastest verified number per case is bold. <i>unverified</i>: equivalence to the '
            'reference failed or was not checked (hover for why), so it cannot be the fastest.</p>'
            + "".join(tables))
