"""`padbench check`: does padding leak into your model?

``MODULE:CALLABLE`` checks your ``nn.Module`` called as ``model(x, key_padding_mask)`` on float
features (``--d-model``); ``hf:SOURCE`` checks a Hugging Face encoder's own padded call on token
ids (``--hf-config``, ``--attn``), loaded as ``--model hf:SOURCE`` is everywhere else.

Exit status: 0 clean, 1 leak, 3 hazard (NaN/Inf confined to padding), 2 bad input
(`padbench.cli.main` prints a `PadbenchError` on one line).
"""

from __future__ import annotations

import argparse
import json
import warnings

from ..check import CLEAN, HAZARD, LEAK, TORCH_MODES, check_hf, check_padding
from ..check import __doc__ as CHECK_DOC
from ..check.hf import ATTN
from ..errors import PadbenchError
from ..model import DTYPES, parse_dtype
from ..user_model import load_model

EXIT_CODES = {CLEAN: 0, LEAK: 1, HAZARD: 3}
NATIVE = "native"


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("target", metavar="MODULE:CALLABLE | hf:SOURCE",
                        help="CALLABLE() returns the nn.Module; MODULE is dotted (importable from the "
                             "current directory) or a path to a .py file. hf:SOURCE: a Hugging Face encoder "
                             "(a local directory with config.json, or bert, roberta, distilbert), its own call "
                             "on padded token ids with attention_mask")
    parser.add_argument("--d-model", type=int, default=None, metavar="D",
                        help="feature size d of x [B, L, d] (MODULE:CALLABLE; required there)")
    parser.add_argument("--hf-config", default="", metavar="KEY=VALUE,...",
                        help="hf: configuration overrides, e.g. num_hidden_layers=1,hidden_size=64")
    parser.add_argument("--attn", choices=ATTN, default=None,
                        help="hf: attention implementation to check (default: sdpa, as padbench loads it)")
    parser.add_argument("--batch-size", type=int, default=4, metavar="B",
                        help="sequences in the test batch (default 4)")
    parser.add_argument("--max-len", type=int, default=10, metavar="L", help="longest sequence (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=(*TORCH_MODES, "both"), default="both",
                        help="module mode: train(), eval() or both (default)")
    parser.add_argument("--dtype", choices=(*DTYPES, NATIVE), default="float64",
                        help="run a copy of the model in this dtype (default float64: round-off cannot "
                             "pass for a leak); 'native' keeps the model's own")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--per-token", dest="per_token", action="store_true", default=None,
                     help="outputs are [B, L, ...] (default: detected)")
    out.add_argument("--per-sequence", dest="per_token", action="store_false", default=None,
                     help="outputs are [B, ...] (default: detected)")
    parser.add_argument("--lengths", type=_parse_lengths, default=None, metavar="N,N,...",
                        help="the batch's sequence lengths (overrides --batch-size/--max-len)")
    parser.add_argument("--device", default=None, help="run the check on this device (default: the model's)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=_run_cli)
    return parser


def _parse_lengths(text: str) -> list:
    try:
        return [int(n) for n in text.replace(" ", "").split(",") if n]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _check(args: argparse.Namespace):
    common = dict(lengths=args.lengths, batch_size=args.batch_size, max_len=args.max_len, seed=args.seed,
                  modes=TORCH_MODES if args.mode == "both" else (args.mode,),
                  dtype=None if args.dtype == NATIVE else parse_dtype(args.dtype), device=args.device)
    if args.target.startswith("hf:"):
        if args.d_model is not None:
            raise PadbenchError("--d-model applies to MODULE:CALLABLE; an hf: model's hidden size is its config's "
                                "(--hf-config)")
        if args.per_token is False:
            raise PadbenchError("--per-sequence applies to MODULE:CALLABLE; an hf: model's last_hidden_state is "
                                "per token")
        return check_hf(args.target, hf_config=args.hf_config, attn=args.attn, **common)
    if args.hf_config or args.attn:
        raise PadbenchError(f"--{'hf-config' if args.hf_config else 'attn'} applies to hf:SOURCE models only, "
                            f"not {args.target!r}")
    if args.d_model is None:
        raise PadbenchError("MODULE:CALLABLE needs --d-model D, the feature size of x [B, L, D]")
    model = load_model(args.target)
    report = check_padding(model, args.d_model, per_token=args.per_token, **common)
    report.model = f"{args.target} ({report.model})"
    return report


def _run_cli(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        # nn.TransformerEncoder's fast path warns on every call; noise in a report
        warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors is in prototype stage")
        report = _check(args)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        print(report.summary())
    return EXIT_CODES[report.verdict]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``check`` subcommand to a ``parser.add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "check", help="does padding leak into your model? (exit 0 clean, 1 leak, 3 hazard, 2 bad input)",
        description=CHECK_DOC.split("\n\n")[0] if CHECK_DOC else None)
    return _configure(parser)
