"""`padbench check`: does padding leak into your model?

Exit status: 0 clean, 1 leak, 3 hazard (NaN/Inf confined to padding), 2 bad input
(`padbench.cli.main` prints a `PadbenchError` on one line).
"""

from __future__ import annotations

import argparse
import json
import warnings

from ..check import CLEAN, HAZARD, LEAK, TORCH_MODES, check_padding
from ..check import __doc__ as CHECK_DOC
from ..model import DTYPES, parse_dtype
from ..user_model import load_model

EXIT_CODES = {CLEAN: 0, LEAK: 1, HAZARD: 3}
NATIVE = "native"


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("target", metavar="MODULE:CALLABLE",
                        help="CALLABLE() returns the nn.Module; MODULE is dotted (importable from the "
                             "current directory) or a path to a .py file")
    parser.add_argument("--d-model", type=int, required=True, metavar="D", help="feature size d of x [B, L, d]")
    parser.add_argument("--batch-size", type=int, default=4, metavar="B",
                        help="sequences in the test batch (default 4)")
    parser.add_argument("--max-len", type=int, default=10, metavar="L", help="longest sequence (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=(*TORCH_MODES, "both"), default="both",
                        help="module mode: train(), eval() or both (default)")
    parser.add_argument("--dtype", choices=(*DTYPES, NATIVE), default="float64",
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
    model = load_model(args.target)
    with warnings.catch_warnings():
        # nn.TransformerEncoder's fast path warns on every call; noise in a report
        warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors is in prototype stage")
        report = check_padding(
            model, args.d_model, lengths=args.lengths, batch_size=args.batch_size, max_len=args.max_len,
            seed=args.seed, modes=TORCH_MODES if args.mode == "both" else (args.mode,),
            per_token=args.per_token, dtype=None if args.dtype == NATIVE else parse_dtype(args.dtype),
            device=args.device)
    report.model = f"{args.target} ({report.model})"
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        print(report.summary())
    return EXIT_CODES[report.verdict]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``check`` subcommand to a ``parser.add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "check", help="does padding leak into your model? (exit 0 clean, 1 leak, 3 hazard, 2 bad input)",
        description=CHECK_DOC.split("\n\n")[0] if CHECK_DOC else None)
    return _configure(parser)
