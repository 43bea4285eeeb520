"""`padbench` command line: every subcommand's arguments live in this package, one module each.

Library modules never import from here. Each subcommand module has ``add_parser(subparsers)``;
they are imported explicitly, so a broken one fails loudly instead of vanishing from ``--help``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from ..errors import PadbenchError
from . import aot_check, asv, check, compare, epoch, kernel, listing, recommend, report, run, triton_tune

COMMANDS = (run, listing, check, recommend, kernel, report, compare, asv, aot_check, triton_tune, epoch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="padbench", description="Measure how to batch variable-length sequences "
                                     "through a transformer encoder: speed, memory and equivalence of every strategy.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
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
        print(f"padbench {args.command}: error: {(str(exc).splitlines() or [type(exc).__name__])[0]}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `padbench ... | head`
        sys.stderr.close()
        return 0
