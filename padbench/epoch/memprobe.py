"""Fresh-process peak memory of one epoch batch: ``python -m padbench.epoch.memprobe '<job json>'``.

`padbench.memprobe` probes a case's seeded batch; an epoch's batches are explicit lengths (and
`rowpacked` a row length), so this probe takes those. Same rule: only strategies that compile
run the batch first; for the others the first batch is the one measured (a second one reuses
the first one's freed memory and would read as zero on CPU).
"""

from __future__ import annotations

import json
import sys

import torch

from ..measure import peak_bytes_in_process
from ..model import EncoderSpec


def probe(job: dict, *, warm: bool = False) -> int:
    from .batchrun import BatchRun, make_batch, make_strategy

    spec = EncoderSpec(**job["spec"])
    encoder = spec.build(job["seed"], job["device"])
    strategy = make_strategy(job["strategy"], encoder, job.get("row_len"))
    batch = make_batch(job["lengths"], spec, job["device"], job["batch_seed"])
    run = BatchRun(job["mode"], job["device"], encoder, strategy, batch)
    if warm or strategy.needs_warmup:
        run.step()
    return peak_bytes_in_process(run.step, job["device"])


def main(argv=None) -> int:
    job = json.loads((argv or sys.argv[1:])[0])
    print(json.dumps({"peak_mem_bytes": probe(job), "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
