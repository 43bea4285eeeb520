"""`padbench asv machine|repeat|show`: name and register this machine for asv, compare two runs'
timings, print asv results as padbench rows."""

from __future__ import annotations

import sys

import pandas as pd

from ..asv_results import load, register_machine, repeatability


def add_parser(sub) -> None:
    p = sub.add_parser("asv", help="asv helpers: name and register this machine; compare two runs; show results")
    cmds = p.add_subparsers(dest="asv_command", required=True)
    m = cmds.add_parser("machine", help="register this machine for asv and print its name")
    m.add_argument("--name", help="override the name (default: gpu-<gpu> or cpu-<N>core-<cpu>)")
    m.set_defaults(func=cmd_machine)
    s = cmds.add_parser("show", help="print the asv results as padbench rows")
    s.add_argument("results_dir", nargs="?", default="results")
    s.set_defaults(func=cmd_show)
    r = cmds.add_parser("repeat", help="how much two runs' timings of the same cases differ")
    r.add_argument("first", help="asv result file of the first run (a copy)")
    r.add_argument("second", help="asv result file of the second run")
    r.set_defaults(func=cmd_repeat)


def cmd_machine(args) -> int:
    print(register_machine(args.name))
    return 0


def cmd_repeat(args) -> int:
    try:
        df = repeatability(args.first, args.second)
    except (OSError, ValueError, KeyError) as exc:
        print(f"padbench asv repeat: cannot read asv results: {exc}", file=sys.stderr)
        return 2
    if df.empty:
        print("no timing measured in both files")
        return 1
    with pd.option_context("display.width", 200, "display.max_rows", None, "display.max_colwidth", 80):
        print(df.to_string(float_format=lambda v: f"{v:.4g}"))
    for group, part in [("all", df)] + list(df.groupby(df.index.get_level_values(0).str.split(".").str[0])):
        print(f"{group}: {len(part)} cases, median difference {100 * part.rel_diff.median():.1f}%, "
              f"{int((part.rel_diff < 0.05).sum())} within 5%, worst {100 * part.rel_diff.max():.1f}%")
    return 0


def cmd_show(args) -> int:
    df = load(args.results_dir)
    cols = [c for c in ("env_machine", "env_git_commit", "mode", "distribution", "strategy", "device", "status",
                        "time_s", "tokens_per_s", "speedup", "peak_mem_bytes", "process_peak_bytes", "max_rel_err")
            if c in df]
    with pd.option_context("display.width", 200, "display.max_rows", None, "display.max_columns", None):
        print(df[df["status"] == "ok"][cols].to_string(index=False))
    return 0
