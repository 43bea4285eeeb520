"""`padbench recommend`: which batching strategy to use for *your* sequence lengths.

Give it your lengths (``--lengths FILE``: one integer per line or a ``.npy`` array; or a named
distribution with ``--dist NAME``) and the model, device and mode you care about. By default it
measures, on batches drawn from your lengths (with replacement, seeded: the ``file:PATH``
distribution), every strategy this machine supports, through `padbench.runner`, the same code
path as ``padbench run``; `padbench.judge` says which ones compute the reference function.
A strategy that is not equivalent is never recommended.

One job per module:

- `source`: the user's lengths (`resolve_lengths`) and which batches to measure (`pick_seeds`:
  ``--draws`` batches, default 3, at the quantiles of their padded/real work ratio, the median
  batch first);
- `timing`: preparation (`padbench.runner.warm_up`, never timed) and interleaved rounds of timed
  blocks, so that load from other processes hits every strategy alike (why: its docstring);
- `measuring`: the plan (`measure`): screen on the first draw, equivalence records, other draws,
  peak memory;
- `ranking`: entries from the timings (`aggregate`), `rank`, `recommended`;
- `prose`: the one-paragraph advice (`verdict`) and whether the machine was busy;
- `snippets`: how to adopt each strategy;
- `nearest`: ``--from-results PATH``: nothing is measured, the measured case nearest to your
  lengths (same device, mode and model; closest padding ratio, mean length, length spread and
  batch size) is ranked instead (`from_results`);
- `output`: the JSON document (`result_document`) and the text printed from it;
- `pipeline`: all of it, from lengths to the document (`advise`);
- `epoch` (``--epoch``): a batching policy too: `padbench.epoch.measure_epochs` times one whole
  epoch of the lengths file per (policy, strategy) and `choose` picks the shortest epoch that
  computes the reference function (`advise_epoch`); `epoch_output` makes its JSON document and
  text, with the loader's code (`padbench.epoch.loaders`) and the model's (`snippets`).

A strategy's tokens/s, efficiency and speedup (`padded`'s time over its own on the same batch)
are medians over the draws; the ranking follows the speedup. ``--time-budget`` (default 60 s) is
a soft limit: a further draw starts only while it lasts.
"""

from __future__ import annotations

from ..judge import BASELINE
from .epoch import advise_epoch, choose
from .epoch_output import epoch_document, epoch_text
from .measuring import TIME_BUDGET_S, measure
from .nearest import case_features, distance, from_results, model_match
from .output import DOCUMENT_ENTRY_KEYS, nearest_text, result_document, table_text, text_output
from .pipeline import advise
from .prose import machine_load, verdict
from .ranking import ENTRY_KEYS, aggregate, entry, rank, recommended, time_speedup
from .snippets import SNIPPETS, epoch_model_snippet, snippet
from .source import DRAWS, LengthSource, pick_seeds, resolve_lengths
from .timing import QUICK, interleaved, prepare_warm, time_block

# Tunables (SCREEN_*, BLOCK_S, ROUNDS, ...) are read from their own modules (`measuring`, `timing`):
# set them there, not here.
__all__ = [
    "BASELINE", "DOCUMENT_ENTRY_KEYS", "DRAWS", "ENTRY_KEYS", "LengthSource", "QUICK", "SNIPPETS", "TIME_BUDGET_S",
    "advise", "advise_epoch", "aggregate", "case_features", "choose", "distance", "entry", "epoch_document",
    "epoch_model_snippet", "epoch_text", "from_results", "interleaved", "machine_load", "measure", "model_match",
    "nearest_text", "pick_seeds", "prepare_warm", "rank", "recommended", "resolve_lengths", "result_document",
    "snippet", "table_text", "text_output", "time_block", "time_speedup", "verdict",
]
