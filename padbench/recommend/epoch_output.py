"""What ``recommend --epoch`` shows: the JSON document (`epoch_document`), the advice and the text built from it."""

from __future__ import annotations

from ..epoch import EpochConfig
from ..epoch.loaders import loader_snippet
from ..epoch.policies import SHAPE
from ..epoch.table import BASELINE
from ..judge import number
from ..models import describe
from ..results import json_safe
from .epoch import overlap
from .snippets import epoch_model_snippet

# What the `shuffled` field of a row means for the user's training (docs/epoch.md, "Shuffling").
ORDER = {
    "samples": "batches are drawn anew every epoch (a new random composition, as with shuffle=True)",
    "mega-batches": ("partly shuffled: random mega-batches every epoch, but inside one the batches are made "
                     "by length"),
    "batch order": ("only the order of the batches is shuffled: each batch's composition is fixed by one "
                    "global {how} of the data (data-order rules such as MLPerf's forbid reusing one sorted order)"),
}


def _num(v) -> str:
    v = number(v)
    if v is None:
        return "?"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def seconds(v) -> str:
    return f"{_num(v)} s"


def pair_name(p: dict) -> str:
    return f"`{p['policy']}` + `{p['strategy']}`"


def interval(p: dict) -> str:
    """``p``'s epoch time and how sure it is: "13.5 s (95% interval 11.6-16.6 s)"."""
    lo, hi = number(p.get("epoch_s_low")), number(p.get("epoch_s_high"))
    if lo is None or hi is None:
        return seconds(p.get("epoch_s"))
    if lo == hi:
        return f"{seconds(p.get('epoch_s'))} (every batch timed)"
    return f"{seconds(p.get('epoch_s'))} (95% interval {_num(lo)}-{seconds(hi)})"


def shuffling(p: dict) -> str:
    text = ORDER.get(p.get("shuffled"), f"order: {p.get('shuffled')}")
    return text.format(how="packing" if p["policy"] == "rows" else "sort by length")


def advice(doc: dict, where: str | None = None) -> list[str]:
    """The verdict: what to use, how sure, compared with what; then what was excluded, and why.

    ``doc``: `epoch_document`'s keys ``chosen``, ``runner_up``, ``baseline``, ``vs_baseline``,
    ``current``, ``excluded`` (`choose`) and, unless ``where`` says what was measured, ``lengths``,
    ``epoch``, ``device`` and ``mode``.
    """
    chosen, base, cur = doc["chosen"], doc["baseline"], doc.get("current")
    where = where or (f"for an epoch of your {doc['lengths']['count']:,} lengths (B={doc['epoch']['batch_size']}) "
                      f"on {doc['device']} {doc['mode']}")
    if chosen is None:
        return [f"{where}, no pair of policy and strategy was measured in full to compute the reference function: "
                "nothing to recommend (see the excluded pairs)."]
    if (chosen["policy"], chosen["strategy"]) == BASELINE:
        head = f"{where}, keep {pair_name(chosen)}: an epoch in {interval(chosen)}."
    else:
        head = f"{where}, use {pair_name(chosen)}: an epoch in {interval(chosen)}"
        if doc["vs_baseline"]:
            head += f", {doc['vs_baseline']:.2f}x shorter than {pair_name(base)} at {interval(base)}"
        elif base is not None:
            head += f"; {pair_name(base)} was excluded ({_reason(doc, base)}), so no ratio to it"
        head += "."
    lines = [head]
    if cur is not None:
        if cur["best"] is None:
            lines.append(f"Your policy `{cur['policy']}`: no pair of it was measured in full to compute the reference "
                         "function.")
        elif (cur["best"]["policy"], cur["best"]["strategy"]) == (chosen["policy"], chosen["strategy"]):
            lines.append(f"Your policy `{cur['policy']}` is the one to keep, with `{chosen['strategy']}`.")
        else:
            lines.append(f"{cur['ratio']:.2f}x shorter than the best with your policy: {pair_name(cur['best'])} at "
                         f"{interval(cur['best'])}.")
    runner = doc["runner_up"]
    if runner is not None:
        same = " Their intervals overlap: as good, within the estimate's noise." if overlap(chosen, runner) else ""
        lines.append(f"Runner-up: {pair_name(runner)} at {interval(runner)}.{same}")
    base_pad = f" (`random`: {base['padding_fraction']:.1%})" if base and chosen["policy"] != "random" and \
        number(base.get("padding_fraction")) is not None else ""
    lines.append(f"Padding: {chosen['padding_fraction']:.1%} of the tokens in the loader's batches{base_pad}. "
                 f"Order: {shuffling(chosen)}.")
    if doc["excluded"]:
        lines.append("Excluded: " + "; ".join(f"`{e['policy']}` + `{e['strategy']}` ({e['reason']})"
                                              for e in doc["excluded"]) + ".")
    return lines


def _reason(doc: dict, p: dict) -> str:
    return next((e["reason"] for e in doc["excluded"] if (e["policy"], e["strategy"]) == (p["policy"], p["strategy"])),
                p.get("status") or "?")


def epoch_document(rows: list[dict], choice: dict, *, cfg: EpochConfig, policies, strategies, lengths: dict,
                   shape: str | None, seconds: float, load: dict | None) -> dict:
    """The ``--json`` document (docs/recommend.md, "Batching policy too"): plain JSON, no NaN."""
    chosen = choice["chosen"]
    doc = {
        "device": cfg.device, "mode": cfg.mode, "lengths": lengths, "model": cfg.spec.as_dict(),
        "epoch": {"batch_size": cfg.batch_size, "max_tokens": cfg.max_tokens, "row_len": cfg.row_len,
                  "policies": list(policies), "strategies": list(strategies), "seed": cfg.seed, "sample": cfg.sample,
                  "measure_all": cfg.measure_all},
        "rows": rows,
        "recommended": {"policy": chosen["policy"], "strategy": chosen["strategy"]} if chosen else None,
        **choice,
        "interrupted": any(r.get("status") == "interrupted" for r in rows),
        "seconds": round(seconds, 1),
        "machine_load": load,
    }
    doc["verdict"] = " ".join(advice(doc))
    doc["snippets"] = {"loader": None, "model": None}
    if chosen is not None:
        doc["snippets"] = {
            "loader": loader_snippet(chosen["policy"], batch_size=cfg.batch_size, max_tokens=cfg.max_tokens,
                                     row_len=cfg.row_len, seed=cfg.seed),
            "model": epoch_model_snippet(shape or SHAPE[chosen["policy"]], chosen["strategy"], cfg.mode,
                                         describe(cfg.model, cfg.hf_config, cfg.spec, cfg.seed).fields()),
        }
    return json_safe(doc)


def epoch_text(doc: dict) -> str:
    """The printed advice: lengths, what was measured, the epoch table, the verdict, the two snippets."""
    import pandas as pd

    from ..epoch.table import epoch_table

    s, m, e = doc["lengths"], doc["model"], doc["epoch"]
    lines = [f"lengths: {s['source']}: {s['count']:,} sequences, mean {s['mean']:.1f}, max {s['max']}",
             f"measured: one epoch per policy on {doc['device']} {doc['mode']}, model d_model {m['d_model']}, "
             f"nhead {m['nhead']}, ff {m['dim_feedforward']}, layers {m['num_layers']}, {m['dtype']}; "
             f"B={e['batch_size']}, max tokens {e['max_tokens']:,}, row length {e['row_len']}; "
             f"{len(doc['rows'])} pairs in {doc['seconds']:.0f} s"]
    load = doc.get("machine_load") or {}
    if load.get("busy"):
        lines[-1] += (f" (the machine was busy: load {load['load1']:.1f} on {load['cpus']} CPUs; rerun on an idle "
                      "machine for firmer times)")
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_columns", None):
        table = epoch_table(doc["rows"]).drop(columns=["mode"], errors="ignore").to_string(index=False)
    lines += ["", table, "", *advice(doc)]
    chosen, snippets = doc["chosen"], doc["snippets"]
    if chosen is not None and snippets["loader"]:
        lines += ["", f"data loader for `{chosen['policy']}` (given `dataset`, whose item i is a tensor of lengths[i] "
                      "tokens, `lengths` and `num_epochs`):", "", snippets["loader"].rstrip(),
                  "", f"model side: `{chosen['strategy']}` on each batch of that loader (given `encoder`, your "
                      "nn.TransformerEncoder):", "", snippets["model"].rstrip()]
    return "\n".join(lines)
