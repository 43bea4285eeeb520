"""`padbench epoch`: how long one epoch of the user's lengths takes, per batching policy and strategy."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .. import results
from ..environment import environment
from ..epoch import EpochConfig, check_policies, measure_epochs, strategies_for
from ..epoch.table import epoch_table
from ..errors import PadbenchError
from ..lengths import read_lengths_file, validate_lengths
from ..runner import check_device
from .args import add_model_args, parse_modes, parse_strategies, positive_int, spec_from_args

KIND = "padbench.epoch"
SUFFIX = ".pbepoch"  # not .json: asv walks results/ for .json files


def add_parser(sub) -> None:
    p = sub.add_parser("epoch", help="one epoch's time over your lengths, per batching policy and strategy")
    add_model_args(p)
    p.add_argument("--lengths", required=True, help="length file: one integer per line, or a .npy array")
    p.add_argument("--mode", default="inference", help="inference, training or both")
    p.add_argument("--max-tokens", type=positive_int, default=None,
                   help="token budget of token_budget, rows and varlen batches "
                        "(default: batch size x the 95th percentile length, rounded up)")
    p.add_argument("--policies", default="all", help="all or NAME,NAME (random, grouped, token_budget, rows, varlen)")
    p.add_argument("--strategies", default="all", help="all or NAME,NAME (each runs the policies it can)")
    p.add_argument("--measure-all", action="store_true", help="time every batch instead of a sample")
    p.add_argument("--sample", type=positive_int, default=None,
                   help="batches timed per policy and strategy (default: about 2 x sqrt(batches), at least 8)")
    p.add_argument("--no-memory", action="store_true", help="skip the fresh-process peak memory probe")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help='print {"rows": [...]} instead of the table')
    p.add_argument("--out", help=f"also write a results document (JSON) here, e.g. results/epoch/NAME{SUFFIX}")
    p.set_defaults(func=cmd_epoch)


def default_max_tokens(lengths: np.ndarray, batch_size: int) -> int:
    """B x the 95th percentile length: about the tokens, padding included, of a typical padded batch of B."""
    return int(batch_size * math.ceil(float(np.percentile(lengths, 95))))


def cmd_epoch(args) -> int:
    lengths = read_lengths_file(args.lengths)
    if args.max_len is not None:
        validate_lengths(lengths, args.max_len)
    policies = check_policies(args.policies)
    strategies = parse_strategies(args.strategies)
    if not any(strategies_for(p, strategies) for p in policies):
        raise PadbenchError(f"none of the strategies {', '.join(strategies)} runs the policies {', '.join(policies)}")
    modes = parse_modes(args.mode)
    check_device(args.device)
    spec = spec_from_args(args)
    max_tokens = args.max_tokens or default_max_tokens(lengths, args.batch_size)
    row_len = args.max_len or int(lengths.max())
    config = {"lengths_file": str(args.lengths), "sequences": int(len(lengths)), "policies": policies,
              "strategies": strategies, "modes": modes, "batch_size": args.batch_size, "max_tokens": max_tokens,
              "row_len": row_len, "spec": spec.as_dict(), "seed": args.seed, "measure_all": args.measure_all,
              "sample": args.sample}
    doc = results.new_document(environment(args.device), config)
    doc["kind"] = KIND
    doc["rows"] = doc.pop("records")
    out = Path(args.out) if args.out else None

    def keep(rows, done=()):
        doc["rows"] = list(done) + list(rows)
        if out is not None:
            results.write(out, doc)

    interrupted = False
    done: list[dict] = []
    try:
        for mode in modes:
            cfg = EpochConfig(device=args.device, mode=mode, spec=spec, seed=args.seed, batch_size=args.batch_size,
                              max_tokens=max_tokens, row_len=row_len, measure_all=args.measure_all,
                              sample=args.sample, memory=not args.no_memory)
            rows = measure_epochs(lengths, policies, strategies, cfg, progress=not args.no_progress,
                                  on_row=lambda rows, done=tuple(done): keep(rows, done))
            done += rows
            if any(r["status"] == "interrupted" for r in rows):
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True
    doc["interrupted"] = interrupted
    keep([], done)
    if args.json:
        print(json.dumps(results.json_safe({"rows": done}), allow_nan=False))
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_columns", None):
            print(epoch_table(done).to_string(index=False))
    if interrupted:
        print("interrupted: the batches timed so far are kept (unfinished rows marked interrupted)", file=sys.stderr)
        return 130
    if done and not any(r["status"] == "ok" for r in done):
        print("padbench epoch: no policy and strategy could be measured; see the status column", file=sys.stderr)
        return 1
    return 0
