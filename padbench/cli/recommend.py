"""`padbench recommend`: which strategy for your lengths."""

from __future__ import annotations

import argparse
import json

from ..errors import PadbenchError
from ..lengths import DISTRIBUTIONS
from ..recommend import (BASELINE, DRAWS, QUICK, ROUNDS, SCREEN_ROUNDS, BLOCK_S, TIME_BUDGET_S, _entry, aggregate,
                         from_results, machine_load, measure, nearest_text, rank, recommended, resolve_lengths,
                         result_document, snippet, table_text, verdict)
from ..runner import check_device
from ..strategies import MODES, strategy_class
from .args import add_model_args, parse_strategies, positive_int, spec_from_args


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "recommend",
        help="which strategy to use for your lengths: measure (or look up) and rank them",
        description=("Measure every strategy on batches drawn from your sequence lengths (or look up the nearest "
                     "measured case with --from-results) and recommend the fastest one that computes the same "
                     "function as the reference."),
    )
    p.add_argument("--lengths", metavar="FILE", help="your lengths: one integer per line, or a .npy array")
    p.add_argument("--dist", metavar="NAME", help=f"a named distribution instead ({', '.join(DISTRIBUTIONS)})")
    add_model_args(p)
    p.add_argument("--mode", default="inference", help="inference or training")
    p.add_argument("--strategies", default="all", help="all or NAME,NAME (padded, the baseline, is always measured)")
    p.add_argument("--from-results", metavar="PATH",
                   help="rank from measured results (a .pbjson file or folder, or asv results) instead of measuring")
    p.add_argument("--draws", type=positive_int, default=None,
                   help=f"batches drawn from your lengths and measured (default {DRAWS}; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="shorter timing and one draw (a first look)")
    p.add_argument("--time-budget", type=float, default=TIME_BUDGET_S, metavar="S",
                   help=f"soft limit in seconds: no further draw starts once it is spent (default {TIME_BUDGET_S:g}; "
                        "the first draw is always measured; an explicit --draws ignores it)")
    p.add_argument("--no-screen", action="store_true", help="measure every strategy fully, even far slower ones")
    p.add_argument("--no-memory", action="store_true", help="skip the fresh-process peak memory probe")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON document to stdout (nothing else)")
    p.set_defaults(func=cmd_recommend)
    return p


def cmd_recommend(args) -> int:
    if args.mode not in MODES:
        raise PadbenchError(f"unknown mode {args.mode!r}; choose inference or training")
    spec = spec_from_args(args)
    strategies = parse_strategies(args.strategies)
    source = resolve_lengths(args.lengths, args.dist, args.batch_size, args.max_len, args.seed)
    dtype = spec.as_dict()["dtype"]
    draws, cut, batches, phases, load = None, False, None, None, None
    if args.from_results:
        found = from_results(args.from_results, source, device=args.device, mode=args.mode, spec=spec,
                             strategies=None if args.strategies == "all" else strategies)
        entries, nearest = found["entries"], found["nearest"]
        head = nearest_text(nearest, source)
        prefix = "from measured results, "
    else:
        check_device(args.device)
        load = machine_load()
        draws = args.draws or (QUICK["draws"] if args.quick else DRAWS)
        runnable = [s for s in strategies if not strategy_class(s).unsupported_reason(args.device, args.mode, spec.dtype)]
        skipped = [s for s in strategies if s not in runnable and s != BASELINE]
        measured = measure(source, device=args.device, mode=args.mode, spec=spec, strategies=runnable,
                           seed=args.seed, draws=draws, screen_first=not args.no_screen, memory=not args.no_memory,
                           screen_rounds=QUICK["screen_rounds"] if args.quick else SCREEN_ROUNDS,
                           rounds=QUICK["rounds"] if args.quick else ROUNDS,
                           block_s=QUICK["block_s"] if args.quick else BLOCK_S,
                           budget_s=None if args.draws else args.time_budget, progress=not args.no_progress)
        cut = measured["draws_measured"] < draws
        draws = measured["draws_measured"]
        batches = measured["batches"]
        phases = measured["phases_s"]
        entries = aggregate(measured)
        for s in skipped:
            reason = strategy_class(s).unsupported_reason(args.device, args.mode, spec.dtype)
            entries.append(_entry(s, status="unsupported", message=reason or ""))
        entries = rank(entries)
        nearest = None
        prefix = ""
        head = None
    text = verdict(entries, device=args.device, mode=args.mode, batch_size=args.batch_size,
                   pad=source.summary["padding_ratio"], prefix=prefix, load=load)
    doc = result_document(source, entries, device=args.device, mode=args.mode, verdict_text=text, spec=spec,
                          nearest=nearest, draws=draws, cut=cut, batches=batches, phases=phases, load=load)
    if args.json:
        print(json.dumps(doc, indent=1, allow_nan=False))
        return 0
    s = source.summary
    print(f"lengths: {s['source']}: {s['count']} sequences, mean {s['mean']:.1f}, max {s['max']}; "
          f"batches of {args.batch_size}: padding ratio {s['padding_ratio']:.2f} on average")
    if head:
        print(head)
    else:
        pads = ", ".join(f"{b['padding_ratio']:.2f}" for b in batches)
        maxes = ", ".join(str(b["max"]) for b in batches)
        print(f"measured: {args.device} {args.mode}, model d_model {spec.d_model}, nhead {spec.nhead}, "
              f"ff {spec.dim_feedforward}, layers {spec.num_layers}, {dtype}; on {draws} "
              f"batch{'es' if draws != 1 else ''} drawn from your lengths, a typical one first "
              f"(padding ratio {pads}; longest {maxes}) in {sum(phases.values()):.0f} s"
              + (f"; time budget of {args.time_budget:g} s reached: fewer draws" if cut else ""))
    print()
    print(table_text(entries, args.mode))
    print()
    print(text)
    best = recommended(entries)
    if best and best["strategy"] != BASELINE:
        print(f"\nhow to use `{best['strategy']}` (given `encoder`, `x` [B, L, d] and a bool `mask` [B, L], "
              "True = pad):\n")
        print(snippet(best["strategy"], args.mode).rstrip())
    return 0
