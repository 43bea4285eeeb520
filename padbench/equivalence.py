"""Does a strategy compute the reference function? Checked against float64, per sequence.

The reference is the model itself (the `nn.TransformerEncoder`, or the user's own module: see
`padbench.models`), in float64, on one unpadded sequence at a time (standard path), so no
padding or batching enters it. Errors are normwise:
``max_rel_err = max|out - ref| / max|ref|`` over valid positions (elementwise relative error
blows up near zero and says nothing about the function), and per parameter gradient likewise,
reporting the worst parameter.
"""

from __future__ import annotations

import copy
import weakref
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from .batch import VarlenBatch
from .models.base import EncoderModel, Model
from .strategies.padded import standard_path
from .tokens import TokenBatch

# Pads are refilled with noise this much larger than the tokens: a leak shows as O(1) change.
PAD_NOISE_SCALE = 100.0
# Outputs/gradients may move by this much (relative to their scale) when only pads change.
PAD_INVARIANCE_TOL = 1e-5

_float64_copies: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


def _float64(encoder: nn.TransformerEncoder) -> nn.TransformerEncoder:
    ref = _float64_copies.get(encoder)
    if ref is None:
        ref = copy.deepcopy(encoder).to(device="cpu", dtype=torch.float64).train()
        _float64_copies[encoder] = ref
    return ref


def loss_weights(batch, seed: int = 12345) -> torch.Tensor:
    """Fixed seeded weights ``[T, d]``: the training loss is ``sum(out * w)`` over valid tokens."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn((batch.num_tokens, batch.d_model), generator=gen, dtype=torch.float32)
    return w.to(device=batch.device, dtype=batch.dtype)


# Every strategy of a sweep is checked against the reference of the same (weights, batch)
# objects (the runner caches both; padbench never updates weights): compute it once. Keys hold
# the objects themselves so their ids stay valid; a few entries cover a sweep's current batch.
_REFERENCE_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_REFERENCE_CACHE_SIZE = 4


def reference(model: Model | nn.TransformerEncoder, batch, *, grads: bool = False):
    """Float64 per-sequence output ``[T, d]`` (and parameter gradients of the training loss).

    ``model``: a `padbench.models.Model` (its `reference_module`), or an ``nn.TransformerEncoder``.
    """
    if not isinstance(model, Model):
        model = EncoderModel(None, model, model, str(batch.device), batch.dtype)
    module = model.reference_module()
    key = (id(module), id(batch), bool(grads))
    hit = _REFERENCE_CACHE.get(key)
    if hit is None:
        hit = (module, batch, _reference(model, batch, grads))
        _REFERENCE_CACHE[key] = hit
        while len(_REFERENCE_CACHE) > _REFERENCE_CACHE_SIZE:
            _REFERENCE_CACHE.popitem(last=False)
    else:
        _REFERENCE_CACHE.move_to_end(key)
    return hit[2]


def _reference(model: Model, batch, grads: bool):
    ref = _float64(model.reference_module())
    w = loss_weights(batch).to(device="cpu", dtype=torch.float64)
    ref.zero_grad(set_to_none=True)
    outs = []
    with torch.enable_grad() if grads else torch.no_grad(), standard_path():
        start = 0
        for seq in model.reference_inputs(batch):
            n = len(seq)
            if n == 0:
                continue
            out = model.reference_forward(ref, seq)
            if grads:
                (out * w[start : start + n]).sum().backward()
            outs.append(out.detach())
            start += n
    out = torch.cat(outs) if outs else torch.zeros((0, batch.d_model), dtype=torch.float64)
    if not grads:
        return out
    return out, model.reference_grads({name: p.grad.detach().clone() for name, p in ref.named_parameters()
                                       if p.grad is not None})


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max abs error, normwise relative error) of ``a`` against ``ref``, in float64."""
    diff = (a.detach().to("cpu", torch.float64) - ref.to("cpu", torch.float64)).abs()
    if diff.numel() == 0:
        return 0.0, 0.0
    abs_err = float(diff.max())
    scale = float(ref.abs().max())
    return abs_err, abs_err / scale if scale > 0 else abs_err


def grads_rel_err(grads: dict, ref: dict) -> tuple[float, str]:
    """Worst normwise relative error over parameters, and which parameter it is."""
    worst, where = 0.0, ""
    for name, g_ref in ref.items():
        g = grads.get(name)
        if g is None:
            return float("inf"), f"{name} got no gradient"
        err = rel_err(g, g_ref)[1]
        if err > worst or not np.isfinite(err):
            worst, where = err, name
    return worst, where


def _finite(*tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def with_empty_sequence(batch):
    """The same number of tokens, but the shortest sequence emptied (its tokens go to another).

    Keeping T fixed avoids a recompile for compiled strategies.
    """
    lens = np.array(batch.lengths_list)
    if len(lens) < 2:
        lens = np.array([0, lens[0]])
    else:
        order = np.argsort(lens, kind="stable")
        lens[order[1]] += lens[order[0]]
        lens[order[0]] = 0
    if isinstance(batch, TokenBatch):
        return batch.with_lengths(lens)
    return VarlenBatch.from_lengths(lens, batch.d_model, dtype=batch.dtype, device=batch.device, allow_empty=True)


def check(prepared) -> dict:
    """Equivalence fields of one record for a prepared case (see `runner.Prepared`)."""
    training = prepared.case.mode == "training"
    batch = prepared.batch
    out, grads = prepared.output(batch)
    if training:
        ref_out, ref_grads = reference(prepared.model, batch, grads=True)
    else:
        ref_out, ref_grads = reference(prepared.model, batch), None
    max_abs, max_rel = rel_err(out, ref_out)
    result = {"max_abs_err": max_abs, "max_rel_err": max_rel, "grad_rel_err": None, "grad_worst_param": None}
    if training:
        result["grad_rel_err"], result["grad_worst_param"] = grads_rel_err(grads, ref_grads)

    noisy = batch.with_pad_noise(seed=batch.pad_seed + 7919, scale=PAD_NOISE_SCALE)
    out2, grads2 = prepared.output(noisy)
    invariant = rel_err(out2, out)[1] <= PAD_INVARIANCE_TOL
    if training:
        invariant = invariant and grads_rel_err(grads2, grads)[0] <= PAD_INVARIANCE_TOL
    result["pad_invariant"] = bool(invariant)

    empty = with_empty_sequence(batch)
    try:
        out3, grads3 = prepared.output(empty)
        result["nan_free"] = _finite(out3, *(grads3 or {}).values())
    except (RuntimeError, ValueError) as exc:
        result["nan_free"] = False
        result["nan_message"] = f"an empty sequence raised {type(exc).__name__}: {str(exc).splitlines()[0]}"
    return result
