"""`padbench run`: measure strategies on seeded batches and write a results file."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from .. import results
from ..environment import environment
from ..lengths import DEFAULT_DISTS
from ..runner import check_case, check_device, describe, measure_case, sweep_cases
from ..table import comparison
from .args import add_model_args, model_from_args, parse_dists, parse_modes, parse_strategies, spec_from_args


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
    p.set_defaults(func=cmd_run)


def print_table(df: pd.DataFrame) -> None:
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_columns", None):
        print(comparison(df).to_string(index=False))


def cmd_run(args) -> int:
    from tqdm import tqdm

    modes = parse_modes(args.mode)
    strategies = parse_strategies(args.strategies, args.model)
    dists = parse_dists(args.dists)
    check_device(args.device)
    spec = spec_from_args(args)
    model = model_from_args(args)
    cases = sweep_cases(strategies, dists, modes, device=args.device, batch_size=args.batch_size,
                        max_len=args.max_len, spec=spec, seed=args.seed, **model)
    for c in cases:
        check_case(c.validate())  # a length file over --max-len fails here, before any measuring
    out = Path(args.out) if args.out else results.default_path(args.device)
    config = {"modes": modes, "strategies": strategies, "distributions": dists, "batch_size": args.batch_size,
              "max_len": args.max_len, "spec": spec.as_dict(), "seed": args.seed, "quick": args.quick,
              "model": describe(cases[0]).fields() if cases else None}
    doc = results.new_document(environment(args.device), config)
    timing = {"min_run_time": 0.2, "max_run_time": 1.0} if args.quick else {"min_run_time": 0.5, "max_run_time": 3.0}
    interrupted = False
    bar = tqdm(cases, unit="case", file=sys.stderr, disable=args.no_progress)
    try:
        for case in bar:
            bar.set_description(f"{case.mode[:5]} {case.distribution} {case.strategy}")
            doc["records"].append(measure_case(case, memory=not args.no_memory, **timing))
            results.write(out, doc)  # after every case: an interrupted run keeps what it measured
    except KeyboardInterrupt:
        interrupted = True
        doc["interrupted"] = True
        results.write(out, doc)
    finally:
        bar.close()
    if doc["records"]:
        print_table(results.load(out))
    measured = sum(r["status"] == "ok" for r in doc["records"])
    print(f"\n{len(doc['records'])} of {len(cases)} cases written to {out} ({measured} measured)")
    if interrupted:
        print("interrupted: the cases measured so far are kept", file=sys.stderr)
        return 130
    if doc["records"] and not measured:
        failed = {r["status"] for r in doc["records"]}
        print(f"padbench run: no case could be measured ({', '.join(sorted(failed))}); see the table", file=sys.stderr)
        return 1
    return 0
