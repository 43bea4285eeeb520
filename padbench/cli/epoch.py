"""`padbench epoch`: how long one epoch of the user's lengths takes, per batching policy and strategy."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import results
from ..environment import environment
from ..epoch import EpochConfig, check_policies, measure_epochs, strategies_for
from ..epoch.estimate import CUTOFF
from ..epoch.table import epoch_table
from ..errors import PadbenchError
from ..lengths import read_lengths_file, validate_lengths
from ..loader import EPOCH_KIND, EPOCH_SUFFIX
from ..runner import check_device
from .args import add_model_args, model_from_args, parse_modes, parse_strategies, positive_int, spec_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("epoch", help="one epoch's time over your lengths, per batching policy and strategy")
    add_model_args(p)
    p.add_argument("--lengths", required=True, help="length file: one integer per line, or a .npy array")
    p.add_argument("--mode", default="inference", help="inference, training or both")
    p.add_argument("--strategies", default="all", help="all or NAME,NAME (each runs the policies it can)")
    add_epoch_options(p)
    p.add_argument("--no-memory", action="store_true", help="skip the fresh-process peak memory probe")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help='print {"rows": [...]} instead of the table')
    p.add_argument("--out", help=f"also write a results document (JSON) here, e.g. results/epoch/NAME{EPOCH_SUFFIX}")
    p.set_defaults(func=cmd_epoch)


def add_epoch_options(p) -> None:
    """The epoch's own options: `padbench epoch` and `padbench recommend --epoch` both take them."""
    p.add_argument("--max-tokens", type=positive_int, default=None,
                   help="token budget of token_budget, rows and varlen batches "
                        "(default: batch size x the 95th percentile length, rounded up)")
    p.add_argument("--policies", default="all", help="all or NAME,NAME (random, grouped, token_budget, rows, varlen)")
    p.add_argument("--measure-all", action="store_true", help="time every batch instead of a sample")
    p.add_argument("--sample", type=positive_int, default=None,
                   help="batches timed per policy and strategy (default: about 2 x sqrt(batches), at least 8)")
    p.add_argument("--no-cutoff", action="store_true",
                   help=f"time the whole sample of every pair, even one whose epoch is over {CUTOFF:g}x the shortest")


def default_max_tokens(lengths: np.ndarray, batch_size: int) -> int:
    """B x the 95th percentile length: about the tokens, padding included, of a typical padded batch of B."""
    return int(batch_size * math.ceil(float(np.percentile(lengths, 95))))


def read_epoch_lengths(args) -> np.ndarray:
    lengths = read_lengths_file(args.lengths)
    if args.max_len is not None:
        validate_lengths(lengths, args.max_len)
    return lengths


def epoch_config(args, lengths: np.ndarray, mode: str) -> EpochConfig:
    """The `EpochConfig` the options describe (the model loaded here: a bad one fails in one line)."""
    check_device(args.device)
    return EpochConfig(device=args.device, mode=mode, spec=spec_from_args(args), **model_from_args(args),
                       seed=args.seed, batch_size=args.batch_size,
                       max_tokens=args.max_tokens or default_max_tokens(lengths, args.batch_size),
                       row_len=args.max_len or int(lengths.max()), measure_all=args.measure_all,
                       sample=args.sample, memory=not args.no_memory, cutoff=not args.no_cutoff)


def cmd_epoch(args) -> int:
    lengths = read_epoch_lengths(args)
    policies = check_policies(args.policies)
    strategies = parse_strategies(args.strategies, args.model)
    if not any(strategies_for(p, strategies) for p in policies):
        raise PadbenchError(f"none of the strategies {', '.join(strategies)} runs the policies {', '.join(policies)}")
    modes = parse_modes(args.mode)
    cfg = epoch_config(args, lengths, modes[0])
    cfgs = [replace(cfg, mode=mode) for mode in modes]
    config = {"lengths_file": str(args.lengths), "sequences": int(len(lengths)), "policies": policies,
              "strategies": strategies, "modes": modes, "batch_size": cfg.batch_size, "max_tokens": cfg.max_tokens,
              "row_len": cfg.row_len, "spec": cfg.spec.as_dict(), "model": cfg.model, "hf_config": cfg.hf_config,
              "seed": cfg.seed, "measure_all": cfg.measure_all, "sample": cfg.sample, "cutoff": cfg.cutoff}
    doc = results.new_document(environment(args.device), config)
    doc["kind"] = EPOCH_KIND
    doc["rows"] = doc.pop("records")
    out = Path(args.out) if args.out else None

    def keep(rows, done=()):
        doc["rows"] = list(done) + list(rows)
        if out is not None:
            results.write(out, doc)

    interrupted = False
    done: list[dict] = []
    try:
        for cfg in cfgs:
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
