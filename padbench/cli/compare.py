"""`padbench compare A B`: per case, B's time against A's, with a verdict that accounts for noise."""

from __future__ import annotations

import argparse

import pandas as pd

from .. import compare as cmp


def _factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="compare two runs, commits or machines case by case (better / worse / same within noise)",
        description="A and B: padbench run files (*.pbjson), asv result files of two commits "
                    "(results/<machine>/<hash>-<env>.json) or two machine folders (results/<machine>). "
                    "B/A > 1 means B is slower.")
    p.add_argument("a", metavar="A", help="the reference results (file or folder)")
    p.add_argument("b", metavar="B", help="the results compared with A")
    p.add_argument("--factor", type=_factor, default=cmp.DEFAULT_FACTOR,
                   help=f"a time must change by more than this ratio to count (default {cmp.DEFAULT_FACTOR})")
    p.add_argument("--only-regressed", action="store_true", help="list only cases that got slower or failed in B")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="a Markdown table (for a pull request)")
    fmt.add_argument("--csv", action="store_true", help="CSV with the raw numbers (seconds)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    df = cmp.compare(args.a, args.b, factor=args.factor)
    shown = cmp.regressed(df) if args.only_regressed else df
    if args.csv:
        print(shown.to_csv(index=False), end="")
        return 0
    keys = cmp.shown_columns(df)  # a key that varies anywhere is shown, even beside one regressed row
    print(f"A: {df.attrs['a']}\nB: {df.attrs['b']}\n")
    if shown.empty:
        print("no regressed case" if args.only_regressed else "no case ran in either")
    elif args.markdown:
        print(cmp.markdown(shown, keys))
    else:
        with pd.option_context("display.max_rows", None, "display.width", 250, "display.max_columns", None):
            print(cmp.display(shown, keys).to_string(index=False))
    print(f"\n{cmp.summary(df)} (factor {args.factor:g}; B/A > 1: B slower)")
    return 0
