"""What a model is to padbench: the function every strategy computes, and the weights it has.

A model is named by a string (`Case.model`: ``spec``, ``MODULE:CALLABLE`` or ``hf:SOURCE``) so
that a case can be re-created in a fresh process, and resolved into a `Model` at one (device,
dtype) that holds the user's own weights. Strategies keep taking an ``nn.TransformerEncoder``
on hidden states; `Model.bind` puts whatever a model does before its encoder layers (a Hugging
Face encoder's embeddings) in front of the strategy, names parameter gradients as the
reference does, and refuses a strategy that cannot compute this model's function exactly.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..batch import VarlenBatch

KINDS = ("spec", "user", "hf")


@dataclass(frozen=True)
class Shape:
    """The sizes the FLOP model and the record's model columns need."""

    d_model: int
    nhead: int
    dim_feedforward: int
    num_layers: int
    activation: str
    norm_first: bool


@dataclass(frozen=True)
class Description:
    """Who a model is, for records: results of different models never share a row."""

    kind: str  # spec | user | hf
    source: str  # what the user named: "spec", "pkg.mod:build", "hf:bert", "hf:/path/to/dir"
    shape: Shape
    num_params: int
    config: dict = field(default_factory=dict, hash=False, compare=False)
    max_len: int | None = None  # the longest sequence it takes (position embeddings), None: any

    def config_text(self) -> str:
        return json.dumps(self.config, sort_keys=True, default=str)

    def fields(self) -> dict:
        """The record's model columns."""
        return {"model_kind": self.kind, "model_source": self.source, "model_config": self.config_text(),
                "num_params": self.num_params, **asdict(self.shape)}


def zero_dropout(module: nn.Module) -> nn.Module:
    """Dropout off everywhere, in place: padbench measures the deterministic function (dropout 0)."""
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        elif isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0
    return module


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class Bound:
    """A strategy bound to a model: ``bound(batch)`` is the packed output on the model's batch.

    ``module`` holds the parameters a training step trains; ``embed`` (if any) turns the
    model's batch into the hidden-state batch the strategy takes; ``rename`` maps the module's
    parameter gradients onto the names every strategy of the model reports.
    """

    def __init__(self, module: nn.Module, strategy, *, embed=None, rename=None):
        self.module, self.strategy, self.embed, self.rename = module, strategy, embed, rename

    def __call__(self, batch):
        if self.embed is not None:
            batch = batch.embedded(self.embed(batch))
        return self.strategy(batch)

    def grads(self) -> dict:
        grads = {n: p.grad.detach().clone() for n, p in self.module.named_parameters() if p.grad is not None}
        return self.rename(grads) if self.rename else grads


class Model:
    """One model at one (device, dtype). Subclasses say how to build batches, bind and refer."""

    def __init__(self, description: Description, device: str, dtype: torch.dtype):
        self.description, self.device, self.dtype = description, device, dtype

    def bind(self, strategy: str, **options) -> Bound:  # pragma: no cover - interface
        """``strategy`` (built with ``options``, e.g. rowpacked's ``row_len``) on this model;
        UnsupportedError (with the reason) where it cannot compute it exactly."""
        raise NotImplementedError

    def batch(self, lengths: tuple, seed: int):  # pragma: no cover - interface
        raise NotImplementedError

    # the float64 per-sequence reference -----------------------------------------------------
    def reference_module(self) -> nn.Module:  # pragma: no cover - interface
        """The user's own model (dropout off): padbench copies it to float64 and runs it per sequence."""
        raise NotImplementedError

    def reference_inputs(self, batch) -> list[torch.Tensor]:
        """One CPU input per sequence for `reference_forward` (hidden states in float64)."""
        return list(batch.values.detach().to(device="cpu", dtype=torch.float64).split(batch.lengths_list))

    def reference_grads(self, grads: dict) -> dict:
        """The reference's parameter gradients under the names `Bound.grads` uses."""
        return grads

    @staticmethod
    def reference_forward(ref: nn.Module, seq: torch.Tensor) -> torch.Tensor:
        """One sequence through an ``nn.TransformerEncoder``, in its own layout (batch_first or not)."""
        if ref.layers[0].self_attn.batch_first:
            return ref(seq[None])[0]
        return ref(seq[:, None])[:, 0]


@functools.lru_cache(maxsize=32)
def encoder_batch(lengths: tuple, d_model: int, dtype: torch.dtype, device: str, seed: int) -> VarlenBatch:
    return VarlenBatch.from_lengths(lengths, d_model, seed=seed, dtype=dtype, device=device)


class EncoderModel(Model):
    """A model that is an ``nn.TransformerEncoder`` on hidden states (`spec` and the user's own)."""

    def __init__(self, description: Description, encoder: nn.TransformerEncoder, reference: nn.Module,
                 device: str, dtype: torch.dtype):
        super().__init__(description, device, dtype)
        self.encoder = encoder
        self._reference = reference

    def bind(self, strategy: str, **options) -> Bound:
        from ..strategies import strategy_class

        # A strategy that runs something other than an nn.TransformerEncoder refuses it, saying why.
        return Bound(self.encoder, strategy_class(strategy)(self.encoder, **options))

    def batch(self, lengths: tuple, seed: int) -> VarlenBatch:
        return encoder_batch(tuple(lengths), self.description.shape.d_model, self.dtype, self.device, seed)

    def reference_module(self) -> nn.Module:
        return self._reference


def copy_to(module: nn.Module, device: str, dtype: torch.dtype) -> nn.Module:
    """A deep copy on ``device`` in ``dtype``: the user's module itself is never changed."""
    return copy.deepcopy(module).to(device=device, dtype=dtype)
