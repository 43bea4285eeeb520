"""`padbench report`: the static HTML report, and the offline asv dashboard."""

from __future__ import annotations

import argparse

from ..report import build_report, install_dashboard


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="write a static HTML report (plots, tables, verdicts) from results",
        description="Build html/report/index.html from padbench run files (*.pbjson), padbench epoch documents "
                    "(*.pbepoch) and asv results.")
    p.add_argument("paths", nargs="*", default=["results"],
                   help="results files or folders (default: results, i.e. results/padbench/*.pbjson, "
                        "results/epoch/*.pbepoch and asv's results/<machine>/)")
    p.add_argument("--out", default="html/report", help="output folder (default html/report)")
    p.add_argument("--all-runs", action="store_true", help="a section per run, not only the latest per machine")
    p.add_argument("--dashboard", metavar="HTML_DIR",
                   help="also make the asv dashboard that `asv publish` wrote to HTML_DIR work offline "
                        "(asv-tachyon UI, no CDN)")
    p.set_defaults(func=cmd_report)
    return p


def cmd_report(args) -> int:
    index = build_report(args.paths, args.out, all_runs=args.all_runs)
    print(f"report written to {index}")
    print(f"open it: file://{index.resolve()}")
    if args.dashboard:
        dash = install_dashboard(args.dashboard)
        root = dash.parent.resolve()
        print(f"offline asv dashboard installed in {root}")
        print(f"serve it: python -m http.server -d {root} 8000  ->  http://127.0.0.1:8000/")
        try:
            rel = index.resolve().relative_to(root)
            print(f"  report at http://127.0.0.1:8000/{rel.parent.as_posix()}/")
        except ValueError:
            pass
    return 0
