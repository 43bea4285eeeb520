"""`padbench kernel`: the attention ops alone, on the same q/k/v."""

from __future__ import annotations

import argparse
import time

import torch

from ..environment import environment
from ..errors import PadbenchError
from ..kernel_bench import KIND, METHODS, SCHEMA_VERSION, format_table, run_kernel_bench
from ..kernel_bench import __doc__ as KERNEL_DOC
from ..lengths import DEFAULT_DISTS
from ..model import DTYPES
from ..results import write
from .args import positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `kernel` subcommand to padbench's CLI."""
    p = subparsers.add_parser(
        "kernel", help="time attention ops alone: padbench's varlen op vs SDPA padded/loop/NJT, flex, varlen_attn",
        description=KERNEL_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--dists", default=",".join(DEFAULT_DISTS), help="NAME,NAME or file:PATH")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-len", type=int, default=None,
                   help="longest sequence (default: the distribution's own, e.g. uniform 256, lognormal 512)")
    p.add_argument("--nhead", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--mode", default="both", choices=["forward", "backward", "both"])
    p.add_argument("--methods", default="all", help=f"all or a comma list of {','.join(METHODS)}")
    p.add_argument("--backend", default=None, choices=["cpu", "triton"],
                   help="backend of padbench's op (default: triton on CUDA, cpu on CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-time", type=float, default=0.5, help="seconds of timing per case (default 0.5)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", help="write the records as JSON (kind padbench.kernel) to this path")
    p.set_defaults(func=cmd_kernel)
    return p


def cmd_kernel(args) -> int:
    if args.out and str(args.out).endswith(".pbjson"):
        raise PadbenchError("--out: .pbjson is for `padbench run` results; write kernel results to a .json "
                            "path (the committed ones live in results/kernel/)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.time()
    records = run_kernel_bench(
        device=args.device, dtype=args.dtype, batch_size=args.batch_size, max_len=args.max_len,
        nhead=args.nhead, head_dim=args.head_dim, distributions=args.dists, mode=args.mode, seed=args.seed,
        methods=args.methods, backend=args.backend, min_run_time=args.min_time)
    print(format_table(records))
    if args.out:
        doc = {"schema_version": SCHEMA_VERSION, "kind": KIND,
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
               "environment": environment(args.device),
               "config": {k: v for k, v in vars(args).items() if k != "func"},
               "records": records}
        path = write(args.out, doc)
        print(f"wrote {path}")
    return 0 if all(r["status"] != "error" for r in records) else 1
