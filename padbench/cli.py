"""`padbench` command line: run, list (and the subcommands other modules add)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from pathlib import Path

import pandas as pd
import torch

from . import results
from .environment import environment
from .errors import PadbenchError
from .lengths import DISTRIBUTIONS
from .model import EncoderSpec, parse_dtype
from .runner import check_device, check_distribution, measure_case, sweep_cases
from .strategies import MODES, names, strategy_class
from .table import comparison

DEFAULT_DISTS = ("uniform", "lognormal", "constant")
# Modules that add their own subcommand with add_parser(subparsers).
FEATURE_MODULES = ("padbench.kernel_bench", "padbench.report", "padbench.recommend", "padbench.check")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every subcommand that builds the encoder and batches."""
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--max-len", type=positive_int, default=None, help="longest length (default: per distribution)")
    p.add_argument("--d-model", type=positive_int, default=256)
    p.add_argument("--nhead", type=positive_int, default=4)
    p.add_argument("--ff", type=positive_int, default=1024, help="dim_feedforward")
    p.add_argument("--layers", type=positive_int, default=2)
    p.add_argument("--activation", default="gelu", choices=("relu", "gelu"))
    p.add_argument("--norm-first", action="store_true")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16, float16, float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")


def spec_from_args(args) -> EncoderSpec:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return EncoderSpec(args.d_model, args.nhead, args.ff, args.layers, args.activation, args.norm_first, parse_dtype(args.dtype))


def parse_modes(text: str) -> list[str]:
    if text == "both":
        return list(MODES)
    if text not in MODES:
        raise PadbenchError(f"unknown mode {text!r}; choose inference, training or both")
    return [text]


def parse_strategies(text: str) -> list[str]:
    if text == "all":
        return names()
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    for s in chosen:
        strategy_class(s)
    if not chosen:
        raise PadbenchError("no strategy given")
    return chosen


def parse_dists(text: str) -> list[str]:
    chosen = [d.strip() for d in text.split(",") if d.strip()]
    if not chosen:
        raise PadbenchError("no distribution given")
    for d in chosen:
        check_distribution(d)
    return chosen


def print_table(df: pd.DataFrame) -> None:
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_columns", None):
        print(comparison(df).to_string(index=False))


def cmd_run(args) -> int:
    from tqdm import tqdm

    modes = parse_modes(args.mode)
    strategies = parse_strategies(args.strategies)
    dists = parse_dists(args.dists)
    check_device(args.device)
    spec = spec_from_args(args)
    cases = sweep_cases(strategies, dists, modes, device=args.device, batch_size=args.batch_size,
                        max_len=args.max_len, spec=spec, seed=args.seed)
    for c in cases:
        c.validate()  # a length file over --max-len fails here, before any measuring
    out = Path(args.out) if args.out else results.default_path(args.device)
    config = {"modes": modes, "strategies": strategies, "distributions": dists, "batch_size": args.batch_size,
              "max_len": args.max_len, "spec": spec.as_dict(), "seed": args.seed, "quick": args.quick}
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
    print(f"\n{len(doc['records'])} of {len(cases)} cases written to {out}")
    if interrupted:
        print("interrupted: the cases measured so far are kept", file=sys.stderr)
        return 130
    return 0


def cmd_list(args) -> int:
    cuda = torch.cuda.is_available()
    print("strategies (what this machine supports):")
    for name in names():
        cls = strategy_class(name)
        rows = []
        for device in ("cpu", "cuda"):
            for mode in MODES:
                if device == "cuda" and not cuda:
                    why = "no CUDA GPU here"
                else:
                    why = cls.unsupported_reason(device, mode, parse_dtype(args.dtype))
                rows.append(f"{device}/{mode}: {'yes' if not why else 'no (' + why + ')'}")
        print(f"  {name:16s} {cls.summary}")
        for r in rows:
            print(f"  {'':16s}   {r}")
    print("\ndistributions: " + ", ".join(DISTRIBUTIONS) + ", file:PATH (one integer per line, or .npy)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="padbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="measure every strategy on seeded batches and write a results file")
    add_model_args(run)
    run.add_argument("--mode", default="both", help="inference, training or both")
    run.add_argument("--strategies", default="all", help="all or NAME,NAME")
    run.add_argument("--dists", default=",".join(DEFAULT_DISTS), help="NAME,NAME or file:PATH")
    run.add_argument("--quick", action="store_true", help="shorter timing (for a first look)")
    run.add_argument("--no-memory", action="store_true", help="skip the fresh-process peak memory probe")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--out", help="results file (default results/padbench/<time>-<device>.pbjson)")
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="strategies and distributions, and what this machine supports")
    lst.add_argument("--dtype", default="float32")
    lst.set_defaults(func=cmd_list)

    for mod in FEATURE_MODULES:
        try:
            module = importlib.import_module(mod)
        except ImportError:
            continue
        if hasattr(module, "add_parser"):
            module.add_parser(sub)
    return parser


def quiet_torch_notices() -> None:
    """Keep PyTorch's prototype/tracing notices out of padbench's table output."""
    warnings.filterwarnings("ignore", message=".*nested tensors is in prototype.*")
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)


def main(argv=None) -> int:
    quiet_torch_notices()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PadbenchError as exc:
        print(f"padbench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `padbench ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
