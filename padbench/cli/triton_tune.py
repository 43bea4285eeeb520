"""`padbench triton-tune`: time a few Triton tile configurations of the attention kernel and print the best."""

from __future__ import annotations

import argparse

from ..kernels import triton_tune
from ..lengths import sample_lengths
from ..model import DTYPES, parse_dtype
from ..results import write


def add_parser(sub) -> None:
    p = sub.add_parser("triton-tune", help="time Triton tile configurations of padbench's attention kernel",
                       description=triton_tune.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    p.add_argument("--dist", default="uniform", help="length distribution (padbench.lengths)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--nhead", type=int, default=12)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--candidates", help="one list for both kernels, e.g. 128x64x4x3,64x64x8x2 (default: CANDIDATES)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the result as JSON here")
    p.set_defaults(func=cmd_triton_tune)


def cmd_triton_tune(args) -> int:
    lengths = sample_lengths(args.dist, args.batch_size, args.max_len, args.seed)
    cands = None
    if args.candidates:
        c = triton_tune.parse_candidates(args.candidates)
        cands = {"fwd": c, "bwd": c}
    res = triton_tune.autotune(lengths, args.nhead, args.head_dim, dtype=parse_dtype(args.dtype),
                               device=args.device, candidates=cands, seed=args.seed)
    res["distribution"] = args.dist
    res["lengths"] = [int(n) for n in lengths]
    print(triton_tune.format_result(res))
    if args.out:
        print(f"wrote {write(args.out, res)}")
    return 0 if res["fwd"]["chosen"] and res["bwd"]["chosen"] else 1
