"""Fresh-process CPU peak memory of one batch: ``python -m padbench.memprobe '<case json>'``.

Run by `runner.peak_memory`; prints one JSON line. Only strategies that compile run a batch first
(compilation is preparation, not the batch's memory); for the others the first batch is the one
measured, since a second batch reuses the first one's freed memory and would read as zero.
"""

import json
import sys

import torch

from .measure import peak_bytes_in_process
from .runner import Case, prepare


def main(argv=None) -> int:
    case = Case.from_dict(json.loads((argv or sys.argv[1:])[0]))
    prepared = prepare(case)
    if prepared.strategy.needs_warmup:
        prepared.step()
    peak = peak_bytes_in_process(prepared.step, case.device)
    print(json.dumps({"peak_mem_bytes": peak, "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
