"""A sweep: cases measured one after another into a results file that is valid at every moment.

The file is rewritten atomically (`padbench.results.write`) after every case, so a sweep that
is interrupted (Ctrl-C), killed or lost with its machine keeps every case it measured, and
``resume`` continues it: cases the file already holds (matched on the command that reproduces
them, `padbench.repro.record_command`) are kept and not measured again. ``isolate`` runs each
case in a worker process with a time limit (`padbench.worker`), so a crash, a hang or the OOM
killer ends that case and the sweep goes on. `shard` takes a deterministic slice of the cases,
so that N machines (a Slurm array, say) run one sweep between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import results
from .errors import PadbenchError
from .repro import record_command
from .runner import measure_case
from .worker import measure_isolated


def shard(cases: list, index: int, count: int) -> list:
    """Shard ``index`` of ``count`` (0-based): every ``count``-th case from the ``index``-th on.

    Interleaved rather than contiguous, so each shard gets a like share of every mode and
    distribution; the shards of one case list partition it, whatever machine computes them.
    """
    if not (count >= 1 and 0 <= index < count):
        raise PadbenchError(f"shard {index}/{count}: need 0 <= K < N")
    return list(cases[index::count])


def open_document(path: Path, environment: dict, config: dict, *, resume: bool = False) -> dict:
    """The results document to write to ``path``: the one already there when resuming, else a new one."""
    if resume and path.exists():
        doc = results.read(path)
        if doc.get("environment", {}).get("device") not in (None, environment.get("device")):
            raise PadbenchError(f"{path} holds a sweep on {doc['environment']['device']}, "
                                f"not {environment.get('device')}: resume it there, or start a new file")
        doc.setdefault("resumed", []).append(results.new_document(environment, config)["created"])
        return doc
    return results.new_document(environment, config)


@dataclass
class Outcome:
    path: Path
    doc: dict
    planned: int  # cases asked for
    kept: int  # of those, already in the file (resume)
    measured: int  # records written by this sweep
    interrupted: bool


def run(cases: list, path: str | Path, doc: dict, *, isolate: bool = False, case_timeout: float = 900.0,
        threads: int | None = None, on_case: Callable | None = None, **measure) -> Outcome:
    """Measure every case of ``cases`` that ``doc`` lacks, writing ``doc`` to ``path`` after each.

    ``measure``: keywords of `padbench.runner.measure_case` (timing, ``memory``). ``on_case(case,
    i, n)`` is called before each case (a progress bar). Ctrl-C stops the sweep with what it
    measured written and ``interrupted`` set.
    """
    path = Path(path)
    done = {r.get("repro") for r in doc["records"]}
    todo = [c for c in cases if record_command(c) not in done]
    doc.pop("interrupted", None)
    results.write(path, doc)  # valid from the first moment, even before the first case ends
    measured, interrupted = 0, False
    try:
        for i, case in enumerate(todo):
            if on_case is not None:
                on_case(case, i, len(todo))
            if isolate:
                rec = measure_isolated(case, timeout=case_timeout, threads=threads, **measure)
            else:
                rec = measure_case(case, **measure)
            doc["records"].append(rec)
            results.write(path, doc)
            measured += 1
    except KeyboardInterrupt:
        interrupted = True
        doc["interrupted"] = True
        results.write(path, doc)
    return Outcome(path, doc, len(cases), len(cases) - len(todo), measured, interrupted)
