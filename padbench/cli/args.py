"""Argument types and option groups shared by several subcommands."""

from __future__ import annotations

import argparse

import torch

from ..errors import PadbenchError
from ..lengths import check_distribution
from ..model import EncoderSpec, parse_dtype
from ..strategies import MODES, names, strategy_class


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every subcommand that builds the encoder and batches."""
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--max-len", type=positive_int, default=None, help="longest length (default: per distribution)")
    p.add_argument("--d-model", type=positive_int, default=256)
    p.add_argument("--nhead", type=positive_int, default=4)
    p.add_argument("--ff", type=positive_int, default=1024, help="dim_feedforward")
    p.add_argument("--layers", type=positive_int, default=2)
    p.add_argument("--activation", default="gelu", choices=("relu", "gelu"))
    p.add_argument("--norm-first", action="store_true")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16, float16, float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")


def spec_from_args(args) -> EncoderSpec:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return EncoderSpec(args.d_model, args.nhead, args.ff, args.layers, args.activation, args.norm_first,
                       parse_dtype(args.dtype))


def parse_modes(text: str) -> list[str]:
    if text == "both":
        return list(MODES)
    if text not in MODES:
        raise PadbenchError(f"unknown mode {text!r}; choose inference, training or both")
    return [text]


def parse_strategies(text: str) -> list[str]:
    if text == "all":
        return names()
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    for s in chosen:
        strategy_class(s)
    if not chosen:
        raise PadbenchError("no strategy given")
    return chosen


def parse_dists(text: str) -> list[str]:
    chosen = [d.strip() for d in text.split(",") if d.strip()]
    if not chosen:
        raise PadbenchError("no distribution given")
    for d in chosen:
        check_distribution(d)
    return chosen
