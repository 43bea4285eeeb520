"""`padbench list`: the strategies, what this machine supports, and the distributions."""

from __future__ import annotations

import torch

from ..lengths import DISTRIBUTIONS
from ..model import parse_dtype
from ..strategies import DEVICES, MODES, names, strategy_class


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="strategies and distributions, and what this machine supports")
    p.add_argument("--dtype", default="float32")
    p.set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    dtype = parse_dtype(args.dtype)
    cuda = torch.cuda.is_available()
    print("strategies (what this machine supports):")
    for name in names("hf"):  # every strategy: hf_* run hf: models only
        cls = strategy_class(name)
        print(f"  {name:16s} {cls.summary}")
        for device in DEVICES:
            for mode in MODES:
                no_gpu = device == "cuda" and not cuda
                why = "no CUDA GPU here" if no_gpu else cls.unsupported_reason(device, mode, dtype)
                print(f"  {'':16s}   {device}/{mode}: {'yes' if not why else 'no (' + why + ')'}")
    print("\ndistributions: " + ", ".join(DISTRIBUTIONS) + ", file:PATH (one integer per line, or .npy)")
    return 0
