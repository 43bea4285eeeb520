"""The `padbench run` command that measures one case again, for every record and every report row.

A number nobody can re-run is a number nobody can check. The command names everything that
makes a case (strategy, lengths, device, mode, batch, model, dtype, seed), so pasted into a shell
on another machine it measures the same batches through the same weights. The case's options
are spelled out even where they equal today's defaults, since defaults change between versions.
"""

from __future__ import annotations

import math
import shlex

SPEC_DEFAULTS = {"d_model": 256, "nhead": 4, "dim_feedforward": 1024, "num_layers": 2, "activation": "gelu",
                 "norm_first": False}
# record / case field -> `padbench run` option (the spec model's sizes)
SPEC_OPTIONS = {"d_model": "--d-model", "nhead": "--nhead", "dim_feedforward": "--ff", "num_layers": "--layers",
                "activation": "--activation"}


def _given(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and v != ""


def _int(v):
    return int(v) if isinstance(v, float) and v.is_integer() else v


def command(fields: dict) -> str:
    """The command from case fields: strategy, distribution, device, mode, batch_size, max_len,
    seed, dtype, model (``spec`` / ``MODULE:CALLABLE`` / ``hf:SOURCE``), hf_config, the spec
    model's sizes, and optionally ``threads`` and ``target_padding``."""
    args = ["padbench", "run", "--strategies", fields["strategy"], "--dists", fields["distribution"],
            "--mode", fields.get("mode") or "inference", "--device", fields.get("device") or "cpu"]
    for key, opt in (("batch_size", "--batch-size"), ("max_len", "--max-len")):
        if _given(fields.get(key)):
            args += [opt, str(_int(fields[key]))]
    model = fields.get("model") or "spec"
    if model == "spec":
        for key, opt in SPEC_OPTIONS.items():
            value = fields.get(key)
            args += [opt, str(_int(value if _given(value) else SPEC_DEFAULTS[key]))]
        if fields.get("norm_first") in (True, "True", "true", 1):
            args.append("--norm-first")
    else:
        args += ["--model", model]
        if fields.get("hf_config"):
            args += ["--hf-config", fields["hf_config"]]
    args += ["--dtype", fields.get("dtype") or "float32", "--seed", str(_int(fields.get("seed") or 0))]
    if _given(fields.get("threads")):
        args += ["--threads", str(_int(fields["threads"]))]
    text = shlex.join(str(a) for a in args)
    if _given(fields.get("target_padding")):  # asked for by padding ratio: not a `padbench run` option
        text += f"  # lengths drawn for a target padding ratio of {fields['target_padding']}"
    return text


def repro_command(case, *, threads: int | None = None) -> str:
    """The command that measures ``case`` (a `padbench.runner.Case`, validated or not) again."""
    spec = case.spec.as_dict()
    return command({**spec, "strategy": case.strategy, "distribution": case.distribution, "device": case.device,
                    "mode": case.mode, "batch_size": case.batch_size, "max_len": case.max_len, "seed": case.seed,
                    "model": case.model, "hf_config": case.hf_config, "target_padding": case.target_padding,
                    "threads": threads})


def record_command(case) -> str:
    """The command a record of ``case`` measured in this process carries (CPU: at this process's
    thread count, which its timing depends on). A resumed sweep matches cases on it."""
    import torch

    return repro_command(case, threads=torch.get_num_threads() if case.device == "cpu" else None)


def from_record(rec) -> str | None:
    """A record's command: its own ``repro`` where it has one, else rebuilt from its fields (records
    written before ``repro`` existed, and asv rows: the suite's cases are spec-model cases)."""
    own = rec.get("repro")
    if isinstance(own, str) and own:
        return own
    if not _given(rec.get("strategy")) or not _given(rec.get("distribution")):
        return None
    kind, source = rec.get("model_kind"), rec.get("model_source")
    model = source if _given(kind) and kind != "spec" and _given(source) else "spec"
    return command({**rec, "model": model})
