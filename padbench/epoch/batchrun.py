"""One strategy on explicit batches, stepped the way `runner.Prepared` steps a case."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import equivalence, measure
from ..batch import VarlenBatch
from ..model import EncoderSpec
from ..strategies import strategy_class


def make_batch(lengths, spec: EncoderSpec, device: str, seed: int = 0) -> VarlenBatch:
    return VarlenBatch.from_lengths(np.asarray(lengths), spec.d_model, seed=seed, dtype=spec.dtype, device=device)


def make_strategy(name: str, encoder, row_len: int | None = None):
    """The strategy instance; `rowpacked` packs rows of the epoch's row length."""
    cls = strategy_class(name)
    return cls(encoder, row_len=row_len) if name == "rowpacked" and row_len else cls(encoder)


@dataclass(frozen=True)
class _Mode:
    mode: str
    device: str


class BatchRun:
    """A strategy on explicit batches, stepped like `runner.Prepared` (so `runner.warm_up` and
    `equivalence.check` take it): inference under ``no_grad``, training forward + the masked
    loss of `equivalence.loss_weights` + backward, then a device synchronize."""

    def __init__(self, mode: str, device: str, encoder, strategy, batch: VarlenBatch):
        self.case = _Mode(mode, device)
        self.encoder, self.strategy, self.batch = encoder, strategy, batch
        self.model = encoder  # what `equivalence.reference` takes the reference function from
        self.training = mode == "training"
        self._weights: tuple | None = None

    def _loss_weights(self, batch):
        if self._weights is None or self._weights[0] is not batch:
            self._weights = (batch, equivalence.loss_weights(batch))  # one batch at a time
        return self._weights[1]

    def run(self, batch: VarlenBatch) -> torch.Tensor:
        if self.training:
            self.encoder.train()
            self.encoder.zero_grad(set_to_none=True)
            out = self.strategy(batch)
            (out * self._loss_weights(batch)).sum().backward()
        else:
            self.encoder.eval()
            with torch.no_grad():
                out = self.strategy(batch)
        measure.synchronize(self.case.device)
        return out

    def step(self) -> None:
        self.run(self.batch)

    def output(self, batch: VarlenBatch):
        out = self.run(batch).detach()
        if not self.training:
            return out, None
        return out, {n: p.grad.detach().clone() for n, p in self.encoder.named_parameters() if p.grad is not None}
