"""`padbench run`: measure strategies on seeded batches and write a results file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

from .. import results, sweep
from ..environment import environment
from ..errors import PadbenchError
from ..lengths import DEFAULT_DISTS
from ..runner import check_case, check_device, describe, lengths_for, sweep_cases
from ..table import comparison
from .args import (
    add_model_args,
    model_from_args,
    parse_dists,
    parse_modes,
    parse_strategies,
    positive_float,
    shard_spec,
    spec_from_args,
)


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="measure every strategy on seeded batches and write a results file")
    add_model_args(p)
    p.add_argument("--mode", default="both", help="inference, training or both")
    p.add_argument("--strategies", default="all", help="all or NAME,NAME")
    p.add_argument("--dists", default=",".join(DEFAULT_DISTS), help="NAME,NAME or file:PATH")
    p.add_argument("--quick", action="store_true", help="shorter timing (for a first look)")
    p.add_argument("--no-memory", action="store_true", help="skip the fresh-process peak memory probe")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", help="results file (default results/padbench/<time>-<device>.pbjson)")
    p.add_argument("--resume", metavar="FILE", help="continue the sweep in FILE: cases it holds are kept, the rest "
                   "measured and added (FILE is created if missing, so a re-submitted job resumes itself)")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="each case in a worker process: a crash, hang (--case-timeout) or OOM kill ends that case "
                        "as crashed / timeout / oom and the sweep goes on (default: on for cuda, off for cpu)")
    p.add_argument("--case-timeout", type=positive_float, default=900.0, metavar="S",
                   help="with --isolate: seconds a case may take, set-up and checks included (default 900)")
    p.add_argument("--shard", type=shard_spec, metavar="K/N",
                   help="run only the K-th of N interleaved slices of the cases (K from 0), e.g. one per machine")
    p.set_defaults(func=cmd_run)


def print_table(df: pd.DataFrame) -> None:
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_columns", None):
        print(comparison(df).to_string(index=False))


def cases_from_args(args) -> list:
    """Every case the options name (validated: a bad one fails here in one line, before any measuring)."""
    check_device(args.device)
    cases = sweep_cases(parse_strategies(args.strategies, args.model), parse_dists(args.dists), parse_modes(args.mode),
                        device=args.device, batch_size=args.batch_size, max_len=args.max_len,
                        spec=spec_from_args(args), seed=args.seed, **model_from_args(args))
    cases = [check_case(c.validate()) for c in cases]
    for c in cases:  # a length file over --max-len fails here, not after the results file was started
        lengths_for(c.distribution, c.batch_size, c.max_len, c.seed, c.target_padding)
    return cases


def cmd_run(args) -> int:
    from tqdm import tqdm

    cases = cases_from_args(args)
    everything = len(cases)
    if args.shard:
        cases = sweep.shard(cases, *args.shard)
    if args.resume and args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise PadbenchError("--resume FILE writes to FILE; leave out --out")
    out = Path(args.resume or args.out or results.default_path(args.device))
    config = {"modes": parse_modes(args.mode), "strategies": parse_strategies(args.strategies, args.model),
              "distributions": parse_dists(args.dists), "batch_size": args.batch_size, "max_len": args.max_len,
              "spec": cases[0].spec.as_dict() if cases else None, "seed": args.seed, "quick": args.quick,
              "model": describe(cases[0]).fields() if cases else None,
              "shard": list(args.shard) if args.shard else None, "cases_in_sweep": everything}
    doc = sweep.open_document(out, environment(args.device), config, resume=bool(args.resume))
    timing = {"min_run_time": 0.2, "max_run_time": 1.0} if args.quick else {"min_run_time": 0.5, "max_run_time": 3.0}
    isolate = args.device == "cuda" if args.isolate is None else args.isolate
    bar = tqdm(total=len(cases), unit="case", file=sys.stderr, disable=args.no_progress)

    def on_case(case, i, n):
        if i == 0:
            bar.update(len(cases) - n)  # kept from the resumed file
        else:
            bar.update(1)
        bar.set_description(f"{case.mode[:5]} {case.distribution} {case.strategy}")

    try:
        outcome = sweep.run(cases, out, doc, isolate=isolate, case_timeout=args.case_timeout,
                            threads=torch.get_num_threads(), on_case=on_case, memory=not args.no_memory, **timing)
    finally:
        bar.close()
    records = outcome.doc["records"]
    if records:
        print_table(results.load(out))
    measured = sum(r["status"] == "ok" for r in records)
    kept = f", {outcome.kept} kept from before" if outcome.kept else ""
    print(f"\n{len(records)} records in {out}: {outcome.measured} of {len(cases)} cases run now{kept} "
          f"({measured} measured ok)")
    if outcome.interrupted:
        print(f"interrupted: the cases measured so far are kept; go on with --resume {out}", file=sys.stderr)
        return 130
    if records and not measured:
        failed = {r["status"] for r in records}
        print(f"padbench run: no case could be measured ({', '.join(sorted(failed))}); see the table", file=sys.stderr)
        return 1
    return 0
