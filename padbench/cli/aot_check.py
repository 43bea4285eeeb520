"""`padbench aot-check`: compile padbench's Triton kernels for a CUDA target without a GPU."""

from __future__ import annotations

import argparse

from ..kernels import aot_check
from ..model import parse_dtype


def add_parser(sub) -> None:
    p = sub.add_parser("aot-check", help="compile the Triton kernels for a CUDA arch without a GPU (PTX/cubin)",
                       description=aot_check.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", type=int, default=90)
    p.add_argument("--dtypes", default="float16,bfloat16,float32")
    p.add_argument("--head-dims", default="16,64,80,128")
    p.set_defaults(func=cmd_aot_check)


def cmd_aot_check(args) -> int:
    dtypes = [parse_dtype(d) for d in args.dtypes.split(",")]
    for row in aot_check.compile_kernels(args.arch, dtypes, [int(h) for h in args.head_dims.split(",")]):
        print(" ".join(f"{k}={v}" for k, v in row.items()))
    return 0
