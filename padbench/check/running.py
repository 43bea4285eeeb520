"""Running the model for the checker: identical state, seed and inputs for every forward.

Parameters and buffers are snapshotted once and copied back before every forward (BatchNorm's
running statistics change in train mode), gradients are cleared and the seed is reset, so two
forwards differ only by the batch they were given. How the model is called is one function
(`embeddings_call` by default; `padbench.check.hf` passes a Hugging Face model's own call), so
the checker runs any calling convention the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch import nn

from ..errors import PadbenchError, describe
from .inputs import Batch


class ModelState:
    """Snapshot of parameters, buffers, grads and training flags; restores them."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.tensors = [t for _, t in model.named_parameters()] + [t for _, t in model.named_buffers()]
        self.values = [t.detach().clone() for t in self.tensors]
        self.params = [p for _, p in model.named_parameters()]
        self.grads = [None if p.grad is None else p.grad.detach().clone() for p in self.params]
        self.training = [(m, m.training) for m in model.modules()]

    def reset(self) -> None:
        with torch.no_grad():
            for t, v in zip(self.tensors, self.values):
                t.copy_(v)
        for p in self.params:
            p.grad = None

    def restore(self) -> None:
        self.reset()
        for p, g in zip(self.params, self.grads):
            p.grad = g
        for m, flag in self.training:
            m.training = flag


def model_dtype_device(model: nn.Module):
    """The model's floating dtype and device (float32 / CPU for a model without tensors)."""
    dtype, device = None, None
    for t in list(model.parameters()) + list(model.buffers()):
        if device is None:
            device = t.device
        if dtype is None and t.is_floating_point():
            dtype = t.dtype
    return dtype or torch.float32, device or torch.device("cpu")


def embeddings_call(model: nn.Module, batch: Batch):
    """``model(x, key_padding_mask)`` on fresh copies: a model that writes into its inputs must not
    change the next run's."""
    return model(batch.x.clone(), batch.mask.clone())


@dataclasses.dataclass
class Run:
    out: torch.Tensor
    grads: dict | None      # name -> grad (None: no gradient checks possible)


class Runner:
    def __init__(self, model, state: ModelState, per_token, seed: int, call=embeddings_call):
        self.model = model
        self.call = call
        self.state = state
        self.per_token = per_token
        self.seed = seed
        self.named_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.weights: dict = {}
        self.seq_shape: tuple | None = None

    def forward(self, batch: Batch, *, grad: bool, seed: int | None = None) -> Run:
        """One forward (+ backward of a loss over valid outputs); raises on failure."""
        self.state.reset()
        torch.manual_seed(self.seed if seed is None else seed)
        with (contextlib.nullcontext() if grad else torch.no_grad()):
            out = self.call(self.model, batch)
        self._check_output(out, batch)
        grads = None
        if grad and out.requires_grad and self.named_params and self.per_token is not None:
            self.loss(out, batch).backward()
            grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
                     for n, p in self.named_params}
        return Run(out.detach(), grads)

    def _check_output(self, out, batch: Batch) -> None:
        if not isinstance(out, torch.Tensor):
            raise PadbenchError(
                f"the model's forward returned {type(out).__name__}, expected a tensor "
                f"[B, L, ...] or [B, ...]; wrap the model to return one tensor")
        if not out.is_floating_point():
            raise PadbenchError(f"the model's forward returned a {out.dtype} tensor, expected floating point")
        if out.ndim < 1 or out.shape[0] != batch.x.shape[0]:
            raise PadbenchError(
                f"the model's output has shape {list(out.shape)}: its first dimension must be the batch "
                f"size {batch.x.shape[0]}")
        L = batch.x.shape[1]
        if self.per_token and (out.ndim < 2 or out.shape[1] != L):
            raise PadbenchError(
                f"per-token outputs expected ([B, L, ...] with L = {L}), got shape {list(out.shape)}")
        if self.per_token is False:
            if self.seq_shape is None:
                self.seq_shape = tuple(out.shape[1:])
            elif tuple(out.shape[1:]) != self.seq_shape:
                raise PadbenchError(
                    f"per-sequence outputs expected (the same [B, ...] shape for every padded length), "
                    f"got {list(out.shape)} for {batch.shapes()} after {[out.shape[0], *self.seq_shape]}")

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        """sum(valid outputs * fixed seeded weights), over the base batch's rows and positions only."""
        B = len(batch.lengths) - (batch.lengths[-1] == 0)   # the base batch's rows
        L0 = max(batch.lengths)
        if self.per_token:
            sel = out[:B, :L0]
            valid = ~batch.mask[:B, :L0]
        else:
            sel = out[:B]
            valid = None
        key = tuple(sel.shape)
        w = self.weights.get(key)
        if w is None:
            g = torch.Generator().manual_seed(self.seed + 7919)
            w = torch.randn(key, generator=g, dtype=torch.float64).to(out.dtype).to(out.device)
            self.weights[key] = w
        if valid is not None:
            return (sel[valid] * w[valid]).sum()   # indexing, not multiplying: NaN at pads stays out
        return (sel * w).sum()


def probe(runner: Runner, batch: Batch) -> torch.Tensor:
    """The eval no_grad output of ``batch``; a failure here is bad input, not a finding."""
    try:
        return runner.forward(batch, grad=False).out
    except PadbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's forward: any failure is bad input
        raise PadbenchError(f"model({batch.shapes()}) failed in eval mode: {describe(exc)}") from None


def detect_per_token(runner: Runner, batches: dict) -> bool:
    """Per-token outputs follow the padded length; per-sequence ones keep one shape across two lengths."""
    a = probe(runner, batches["base"])
    b = probe(runner, batches["appended_padding"])
    B = batches["base"].x.shape[0]
    L0, L2 = batches["base"].x.shape[1], batches["appended_padding"].x.shape[1]
    if a.ndim >= 2 and a.shape[1] == L0 and b.ndim >= 2 and b.shape[1] == L2 and a.shape[2:] == b.shape[2:]:
        return True
    if a.shape == b.shape:
        return False
    raise PadbenchError(
        f"cannot tell per-token from per-sequence output: shape {list(a.shape)} for [{B}, {L0}, ...] inputs "
        f"and {list(b.shape)} for [{B}, {L2}, ...]; expected [B, L, ...] or [B, ...] (or pass per_token=)")
