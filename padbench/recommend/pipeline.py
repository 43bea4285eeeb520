"""`advise`: one `padbench recommend` from lengths to the result document, measured or looked up."""

from __future__ import annotations

from .. import models
from ..judge import BASELINE
from ..runner import check_device
from ..strategies import names, strategy_class
from .measuring import TIME_BUDGET_S, measure
from .nearest import from_results
from .output import result_document
from .prose import machine_load, verdict
from .ranking import aggregate, entry, rank
from .source import DRAWS, LengthSource
from .timing import BLOCK_S, QUICK, ROUNDS, SCREEN_ROUNDS


def advise(source: LengthSource, *, device: str, mode: str, spec, strategies=None, results_path: str | None = None,
           seed: int = 0, draws: int | None = None, quick: bool = False, screen: bool = True, memory: bool = True,
           time_budget_s: float = TIME_BUDGET_S, progress: bool = True, model: dict | None = None) -> dict:
    """Rank ``strategies`` (None: all) for ``source`` and say what to use: the `result_document`.

    With ``results_path`` nothing is measured: the nearest measured case there is ranked
    (`from_results`). Otherwise every strategy that can run here is measured (`measure`, on
    batches of ``seed`` onwards; an explicit ``draws`` is measured in full, else
    ``time_budget_s`` limits further draws) and the others are listed as unsupported. ``model``:
    ``{"model": ..., "hf_config": ...}`` as `runner.Case` takes them (None: the spec model).
    """
    common = {"device": device, "mode": mode, "spec": spec, "model": model}
    if results_path:
        found = from_results(results_path, source, strategies=strategies, **common)
        entries = found["entries"]
        text = verdict(entries, device=device, mode=mode, batch_size=source.batch_size,
                       pad=source.summary["padding_ratio"], prefix="from measured results, ")
        return result_document(source, entries, verdict_text=text, nearest=found["nearest"], **common)
    check_device(device)
    load = machine_load()
    wanted = list(strategies or names(models.kind((model or {}).get("model", "spec"))))
    reasons = {s: strategy_class(s).unsupported_reason(device, mode, spec.dtype) for s in wanted}
    want_draws = draws or (QUICK["draws"] if quick else DRAWS)
    measured = measure(source, strategies=[s for s in wanted if not reasons[s]], seed=seed, **common,
                       draws=want_draws, screen_first=screen, memory=memory,
                       screen_rounds=QUICK["screen_rounds"] if quick else SCREEN_ROUNDS,
                       rounds=QUICK["rounds"] if quick else ROUNDS, block_s=QUICK["block_s"] if quick else BLOCK_S,
                       budget_s=None if draws else time_budget_s, progress=progress)
    entries = aggregate(measured)
    entries += [entry(s, status="unsupported", message=why) for s, why in reasons.items() if why and s != BASELINE]
    entries = rank(entries)
    text = verdict(entries, device=device, mode=mode, batch_size=source.batch_size,
                   pad=source.summary["padding_ratio"], load=load)
    return result_document(source, entries, verdict_text=text, draws=measured["draws_measured"],
                           cut=measured["draws_measured"] < want_draws, batches=measured["batches"],
                           phases=measured["phases_s"], load=load, **common)
