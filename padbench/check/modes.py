"""Every check in one module mode: the base batch, its padding variants, and what they are compared on.

Eval runs two paths, autograd (gradients) and ``no_grad`` (the inference path:
``nn.TransformerEncoder`` takes its fast path there); train runs autograd. A forward that is
random under a fixed seed (dropout) leaves the comparisons whose input shape changes not
applicable, since the random masks then land elsewhere (see `padbench.check`).
"""

from __future__ import annotations

from ..errors import PadbenchError, describe
from .compare import Checker
from .inputs import Batch
from .report import HAZARD, CheckReport, Violation
from .running import Runner


def check_mode(runner: Runner, checker: Checker, batches: dict, mode: str, report: CheckReport) -> None:
    """Every check in one module mode, on the autograd path and (in eval) the no_grad path."""
    for path in ["autograd"] + (["no_grad"] if mode == "eval" else []):
        _check_path(runner, checker, batches, mode, path, report)


def _check_path(runner: Runner, checker: Checker, batches: dict, mode: str, path: str, report: CheckReport) -> None:
    grad = path == "autograd"

    def fwd(name: str, batch: Batch, seed=None):
        try:
            return runner.forward(batch, grad=grad, seed=seed)
        except PadbenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's forward: any failure is reported
            if name == "empty_sequence":
                return exc
            raise PadbenchError(
                f"{mode}-mode {'forward/backward' if grad else 'forward'} failed on {batch.shapes()} "
                f"({name.replace('_', ' ')} batch): {describe(exc)}") from None

    def not_applicable(check, why):
        report.not_applicable.append({"check": check, "mode": mode,
                                      "reason": f"the {path} forward is random (dropout?): {why}"})

    def compare(check, base, run, cause=""):
        checker.compare_outputs(check, mode, path, base.out, run.out, batches["base"], cause)
        if base.grads is not None and run.grads is not None:
            checker.compare_grads(check, mode, path, base.grads, run.grads, cause)

    base = fwd("base", batches["base"])
    checker.nonfinite("nonfinite", mode, path, base, batches["base"])
    if grad and base.grads is None and runner.named_params:
        report.notes.append(f"{mode} mode: the output does not require grad: gradients not checked")
    if not checker.close(base.out, fwd("base", batches["base"]).out):
        report.not_applicable.append({
            "check": "all", "mode": mode,
            "reason": f"the {path} forward is not reproducible under a fixed torch.manual_seed: "
                      "outputs differ between two identical calls"})
        return
    # dropout: the same seed draws the same masks only for the same input shape
    stochastic = not checker.close(base.out, fwd("base", batches["base"], seed=runner.seed + 1).out)

    for variant in batches["pad_content"]:
        run = fwd("pad_content", variant)
        checker.nonfinite("pad_content", mode, path, run, variant)
        compare("pad_content", base, run, variant.cause)

    run = fwd("appended_padding", batches["appended_padding"])
    checker.nonfinite("appended_padding", mode, path, run, batches["appended_padding"])
    if stochastic:
        not_applicable("appended_padding", "with a different input shape the random masks differ, so outputs "
                                           "cannot be compared; checked in eval mode")
    else:
        compare("appended_padding", base, run)

    run = fwd("empty_sequence", batches["empty_sequence"])
    if isinstance(run, Exception):
        report.violations.append(Violation(
            "empty_sequence", mode, path, "error",
            f"the model fails on a batch containing a fully padded sequence (length 0): {describe(run)}; "
            "batches without an empty sequence run", severity=HAZARD))
        return
    checker.nonfinite("empty_sequence", mode, path, run, batches["empty_sequence"])
    if stochastic:
        not_applicable("empty_sequence", "other rows are not compared when a row is added (NaN/Inf still checked)")
    else:
        compare("empty_sequence", base, run)
