"""`padbench recommend`: which strategy for your lengths."""

from __future__ import annotations

import argparse
import json

from ..epoch import check_policies
from ..errors import PadbenchError
from ..lengths import DISTRIBUTIONS
from ..recommend import DRAWS, TIME_BUDGET_S, advise, advise_epoch, epoch_text, resolve_lengths, text_output
from ..strategies import MODES
from . import epoch as epoch_cli
from .args import add_model_args, model_from_args, parse_strategies, positive_int, spec_from_args

# `padbench epoch`'s own options (`epoch.add_epoch_options`), which only go with --epoch.
EPOCH_OPTIONS = ("--policies", "--max-tokens", "--sample", "--measure-all", "--no-cutoff")


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
    group = p.add_argument_group(
        "batching policy too (--epoch)",
        "time one whole epoch of your --lengths per data-loader policy and strategy (padbench epoch) and recommend "
        "the pair with the shortest equivalent epoch, with the loader's and the model's code")
    group.add_argument("--epoch", action="store_true", help="recommend a (policy, strategy) pair from whole epochs")
    group.add_argument("--current-policy", metavar="POLICY",
                       help="with --epoch: the policy your loader uses now (random, grouped, token_budget, rows, "
                            "varlen), to compare with")
    epoch_cli.add_epoch_options(group)
    p.set_defaults(func=cmd_recommend)
    return p


def cmd_recommend(args) -> int:
    if args.mode not in MODES:
        raise PadbenchError(f"unknown mode {args.mode!r}; choose inference or training")
    if args.epoch:
        return cmd_recommend_epoch(args)
    given = [opt for opt in (*EPOCH_OPTIONS, "--current-policy") if _given(args, opt)]
    if given:
        raise PadbenchError(f"{given[0]} goes with --epoch (a batching policy for whole epochs)")
    spec = spec_from_args(args)
    strategies = parse_strategies(args.strategies, args.model)
    model = model_from_args(args)
    source = resolve_lengths(args.lengths, args.dist, args.batch_size, args.max_len, args.seed)
    doc = advise(source, device=args.device, mode=args.mode, spec=spec, model=model,
                 strategies=None if args.strategies == "all" else strategies, results_path=args.from_results,
                 seed=args.seed, draws=args.draws, quick=args.quick, screen=not args.no_screen,
                 memory=not args.no_memory, time_budget_s=args.time_budget, progress=not args.no_progress)
    if args.json:
        print(json.dumps(doc, indent=1, allow_nan=False))
    else:
        print(text_output(doc, time_budget_s=args.time_budget))
    return 0


def _given(args, opt: str) -> bool:
    value = getattr(args, opt.lstrip("-").replace("-", "_"))
    return value not in (None, False, "all")


def cmd_recommend_epoch(args) -> int:
    """``--epoch``: one epoch per (policy, strategy) of the --lengths file, and the pair to use."""
    if args.dist or not args.lengths:
        raise PadbenchError("--epoch needs your lengths as a file: --lengths FILE (one integer per line, or .npy)")
    refused = {"--from-results": args.from_results, "--draws": args.draws, "--quick": args.quick,
               "--no-screen": args.no_screen, "--time-budget": args.time_budget != TIME_BUDGET_S}
    for opt, value in refused.items():
        if value:
            raise PadbenchError(f"{opt} does not go with --epoch (it times whole epochs of your lengths)")
    lengths = epoch_cli.read_epoch_lengths(args)
    policies = check_policies(args.policies)
    current = args.current_policy
    if current is not None and check_policies(current) != [current]:
        raise PadbenchError(f"--current-policy takes one policy, got {current!r}")
    strategies = parse_strategies(args.strategies, args.model)
    cfg = epoch_cli.epoch_config(args, lengths, args.mode)
    doc = advise_epoch(lengths, cfg, policies=policies, strategies=strategies, source=f"file:{args.lengths}",
                       current=current, progress=not args.no_progress)
    if args.json:
        print(json.dumps(doc, indent=1, allow_nan=False))
    else:
        print(epoch_text(doc))
    return 130 if doc["interrupted"] else 0
