"""`padbench check`: does padding leak into your model?"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import torch

from ..check import MODES, check_padding, load_model
from ..check import __doc__ as CHECK_DOC
from ..errors import PadbenchError


_DTYPES = {"float64": torch.float64, "float32": torch.float32, "native": None}


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("target", metavar="MODULE:CALLABLE",
                        help="CALLABLE() returns the nn.Module; MODULE is dotted (importable from the "
                             "current directory) or a path to a .py file")
    parser.add_argument("--d-model", type=int, required=True, metavar="D", help="feature size d of x [B, L, d]")
    parser.add_argument("--batch-size", type=int, default=4, metavar="B", help="sequences in the test batch (default 4)")
    parser.add_argument("--max-len", type=int, default=10, metavar="L", help="longest sequence (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=("train", "eval", "both"), default="both")
    parser.add_argument("--dtype", choices=tuple(_DTYPES), default="float64",
                        help="run a copy of the model in this dtype (default float64: round-off cannot "
                             "pass for a leak); 'native' keeps the model's own")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--per-token", dest="per_token", action="store_true", default=None,
                     help="outputs are [B, L, ...] (default: detected)")
    out.add_argument("--per-sequence", dest="per_token", action="store_false", default=None,
                     help="outputs are [B, ...] (default: detected)")
    parser.add_argument("--lengths", type=_parse_lengths, default=None, metavar="N,N,...",
                        help="the batch's sequence lengths (overrides --batch-size/--max-len)")
    parser.add_argument("--device", default=None, help="run the check on this device (default: the model's)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=_run_cli)
    return parser


def _parse_lengths(text: str) -> list:
    try:
        return [int(n) for n in text.replace(" ", "").split(",") if n]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _run_cli(args: argparse.Namespace) -> int:
    try:
        model = load_model(args.target)
        with warnings.catch_warnings():
            # nn.TransformerEncoder's fast path warns on every call; noise in a report
            warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors is in prototype stage")
            report = check_padding(
                model, args.d_model, lengths=args.lengths, batch_size=args.batch_size, max_len=args.max_len,
                seed=args.seed, modes=MODES if args.mode == "both" else (args.mode,),
                per_token=args.per_token, dtype=_DTYPES[args.dtype], device=args.device)
    except PadbenchError as exc:
        print(f"padbench check: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr)
        return 2
    report.model = f"{args.target} ({report.model})"
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
    return 0 if report.ok else 1


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``check`` subcommand to a ``parser.add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "check", help="does padding leak into your model? (pads, appended padding, empty sequences)",
        description=CHECK_DOC.split("\n\n")[0] if CHECK_DOC else None)
    return _configure(parser)
