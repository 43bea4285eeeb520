"""Argument types and option groups shared by several subcommands."""

from __future__ import annotations

import argparse

import torch

from .. import models
from ..errors import PadbenchError
from ..lengths import check_distribution
from ..model import EncoderSpec, parse_dtype
from ..strategies import MODES, names, strategy_class

# The spec model's sizes: (option, dest, default). None in args means "not given" (refused beside --model).
SPEC_OPTIONS = (("--d-model", "d_model", 256), ("--nhead", "nhead", 4), ("--ff", "ff", 1024), ("--layers", "layers", 2),
                ("--activation", "activation", "gelu"), ("--norm-first", "norm_first", False))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def shard_spec(text: str) -> tuple[int, int]:
    """``K/N`` (0 <= K < N): the K-th of N slices of a sweep's cases."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not K/N: {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise argparse.ArgumentTypeError(f"need 0 <= K < N, got {text}")
    return k, n


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every subcommand that builds the encoder and batches."""
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--max-len", type=positive_int, default=None, help="longest length (default: per distribution)")
    p.add_argument("--model", default="spec", metavar="MODEL",
                   help="spec (padbench's encoder, the sizes below), MODULE:CALLABLE (your nn.TransformerEncoder, "
                        "its own weights) or hf:SOURCE (a Hugging Face BERT/RoBERTa/DistilBERT: a local directory "
                        "with config.json, or bert, roberta, distilbert with random weights)")
    p.add_argument("--hf-config", default="", metavar="K=V,...", help="hf: models: config overrides")
    p.add_argument("--d-model", type=positive_int, default=None, help="spec model: d_model (default 256)")
    p.add_argument("--nhead", type=positive_int, default=None, help="spec model: heads (default 4)")
    p.add_argument("--ff", type=positive_int, default=None, help="spec model: dim_feedforward (default 1024)")
    p.add_argument("--layers", type=positive_int, default=None, help="spec model: layers (default 2)")
    p.add_argument("--activation", default=None, choices=("relu", "gelu"), help="spec model (default gelu)")
    p.add_argument("--norm-first", action="store_true", default=None, help="spec model: pre-norm layers")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16, float16, float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")


def spec_from_args(args) -> EncoderSpec:
    """The spec model's sizes (defaults where not given) and every model's dtype.

    Sizes beside ``--model MODULE:CALLABLE`` or ``hf:`` are refused: that model's own
    configuration is what runs, and a silently ignored option would mislabel the results.
    """
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    model = getattr(args, "model", "spec")
    given = [opt for opt, dest, _ in SPEC_OPTIONS if getattr(args, dest) is not None]
    if model != "spec" and given:
        raise PadbenchError(f"{given[0]} sets the spec model's sizes; --model {model} runs its own configuration")
    sizes = [default if getattr(args, dest) is None else getattr(args, dest) for _, dest, default in SPEC_OPTIONS]
    return EncoderSpec(*sizes, parse_dtype(args.dtype))


def model_from_args(args) -> dict:
    """``{"model": ..., "hf_config": ...}`` for `Case`, the model loaded once here so a bad one fails
    in one line before anything is measured."""
    model, hf_config = getattr(args, "model", "spec"), getattr(args, "hf_config", "")
    models.describe(model, hf_config, seed=getattr(args, "seed", 0))
    return {"model": model, "hf_config": hf_config}


def parse_modes(text: str) -> list[str]:
    if text == "both":
        return list(MODES)
    if text not in MODES:
        raise PadbenchError(f"unknown mode {text!r}; choose inference, training or both")
    return [text]


def parse_strategies(text: str, model: str = "spec") -> list[str]:
    """``all`` (every strategy for this kind of model: `hf_*` for hf: models) or NAME,NAME."""
    if text == "all":
        return names(models.kind(model))
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
