"""What `padbench recommend` shows: the JSON document (`result_document`) and the text built from it."""

from __future__ import annotations

import math

from ..judge import BASELINE
from ..results import json_safe
from .ranking import ENTRY_KEYS, recommended
from .snippets import header, model_snippet
from .source import LengthSource

# Keys of each ``ranked`` entry in the JSON document.
DOCUMENT_ENTRY_KEYS = (*ENTRY_KEYS, "max_rel_err", "grad_rel_err", "message", "draws", "speedup_per_draw",
                       "round_spread", "prepare_s")


def _fmt(v, kind):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if kind == "tps":
        return f"{v:,.0f}"
    if kind == "x":
        return f"{v:.2f}x"
    if kind == "mb":
        return f"{v / 2**20:.1f}"
    if kind == "eff":
        return f"{v:.3f}"
    if kind == "err":
        return f"{v:.1e}"
    return str(v)


def table_text(entries: list[dict], mode: str) -> str:
    """The ranked table, then a note for every strategy that was not measured to be fine."""
    import pandas as pd

    rows = []
    for i, e in enumerate(entries, 1):
        rows.append({
            "#": i if e["status"] in ("ok", "not equivalent") else "",
            "strategy": e["strategy"],
            "real tokens/s": _fmt(e["tokens_per_s"], "tps"),
            "vs padded": _fmt(e["speedup_vs_padded"], "x"),
            "peak MiB": _fmt(e["peak_mem_bytes"], "mb"),
            "efficiency": _fmt(e["efficiency"], "eff"),
            "rel err": _fmt(e.get("max_rel_err"), "err"),
            **({"grad err": _fmt(e.get("grad_rel_err"), "err")} if mode == "training" else {}),
            "equivalent": {True: "yes", False: "NO", None: ""}[e["equivalent"]],
            "status": e["status"],
        })
    text = pd.DataFrame(rows).to_string(index=False)
    notes = [f"  {e['strategy']}: {e['message'].strip()}" for e in entries if e["message"] and e["status"] != "ok"]
    if notes:
        text += "\n" + "\n".join(notes)
    return text


def result_document(source: LengthSource, entries: list[dict], *, device: str, mode: str, verdict_text: str,
                    spec, nearest: dict | None = None, draws: int | None = None, cut: bool = False,
                    batches: list | None = None, phases: dict | None = None, load: dict | None = None,
                    model: dict | None = None) -> dict:
    """The ``--json`` document (docs/recommend.md): plain Python, no NaN/Inf (valid JSON)."""
    s = source.summary
    best = recommended(entries)
    doc = {
        "device": device,
        "mode": mode,
        "lengths": {"count": s["count"], "mean": s["mean"], "max": s["max"], "padding_ratio": s["padding_ratio"],
                    "source": s["source"], "batch_size": source.batch_size, "cv": s["cv"],
                    "expected_batch_max": s["expected_batch_max"]},
        "model": _model(spec, model),
        "ranked": [{k: e.get(k) for k in DOCUMENT_ENTRY_KEYS} for e in entries],
        "recommended": best["strategy"] if best else None,
        "verdict": verdict_text,
        "measured": nearest is None,
    }
    if draws is not None:
        doc["draws"] = draws
        doc["time_budget_reached"] = cut
        doc["batches"] = batches
        doc["phases_s"] = phases
        doc["machine_load"] = load
    if nearest is not None:
        doc["nearest"] = nearest
    return json_safe(doc)


def _model(spec, model: dict | None) -> dict:
    """The spec's sizes and dtype; another model (``{"model", "hf_config"}``) named as records name it."""
    if not model or model.get("model", "spec") == "spec":
        return spec.as_dict()
    from ..models import describe

    return {"dtype": spec.as_dict()["dtype"], **describe(model["model"], model.get("hf_config", ""), spec).fields()}


def nearest_text(nearest: dict, lengths: dict) -> str:
    """How far the nearest measured case (``--from-results``) is from the user's lengths (``doc["lengths"]``)."""
    parts = [f"nearest measured case: {nearest['distribution']} ({nearest['run']})"]
    if nearest["padding_ratio"] is not None:
        parts.append(f"padding ratio {nearest['padding_ratio']:.2f} vs yours {lengths['padding_ratio']:.2f}")
    if nearest["max_len"] is not None:
        parts.append(f"max_len {nearest['max_len']} vs {lengths['max']}")
    if nearest["mean"] is not None:
        parts.append(f"mean length {nearest['mean']:.0f} vs {lengths['mean']:.0f}")
    if nearest["batch_size"] is not None:
        parts.append(f"batch {nearest['batch_size']} vs {lengths['batch_size']}")
    text = ", ".join(parts)
    if nearest["distance"] > 3:
        text += (" -- far from your lengths: the ranking may not carry over; drop --from-results to measure "
                 "on your own lengths")
    return text


def text_output(doc: dict, *, time_budget_s: float | None = None) -> str:
    """The human-readable output of a `result_document`: lengths, what was measured, table, verdict, snippet."""
    s, m = doc["lengths"], doc["model"]
    lines = [f"lengths: {s['source']}: {s['count']} sequences, mean {s['mean']:.1f}, max {s['max']}; "
             f"batches of {s['batch_size']}: padding ratio {s['padding_ratio']:.2f} on average"]
    if doc.get("nearest"):
        lines.append(nearest_text(doc["nearest"], s))
    else:
        batches, draws = doc["batches"], doc["draws"]
        pads = ", ".join(f"{b['padding_ratio']:.2f}" for b in batches)
        maxes = ", ".join(str(b["max"]) for b in batches)
        budget = f"; time budget of {time_budget_s:g} s reached: fewer draws" \
            if doc["time_budget_reached"] and time_budget_s is not None else ""
        who = f"model {m['model_source']}: " if m.get("model_kind", "spec") != "spec" else "model "
        lines.append(f"measured: {doc['device']} {doc['mode']}, {who}d_model {m['d_model']}, nhead {m['nhead']}, "
                     f"ff {m['dim_feedforward']}, layers {m['num_layers']}, {m['dtype']}; on {draws} "
                     f"batch{'es' if draws != 1 else ''} drawn from your lengths, a typical one first "
                     f"(padding ratio {pads}; longest {maxes}) in {sum(doc['phases_s'].values()):.0f} s{budget}")
    lines += ["", table_text(doc["ranked"], doc["mode"]), "", doc["verdict"]]
    best = doc["recommended"]
    if best and best != BASELINE:
        lines += ["\n" + header(best, m) + "\n", model_snippet(best, doc["mode"], m).rstrip()]
    return "\n".join(lines)
