"""`spec`: padbench's own encoder, rebuilt from sizes (`EncoderSpec`) with seeded weights."""

from __future__ import annotations

from ..model import EncoderSpec
from .base import Description, EncoderModel, Shape


def spec_params(spec: EncoderSpec) -> int:
    """Parameters of ``spec.build()`` without building it: QKV, out projection, FFN, two norms per layer."""
    d, ff = spec.d_model, spec.dim_feedforward
    return spec.num_layers * (4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d)


def describe(spec: EncoderSpec) -> Description:
    config = {k: v for k, v in spec.as_dict().items() if k != "dtype"}
    shape = Shape(spec.d_model, spec.nhead, spec.dim_feedforward, spec.num_layers, spec.activation, spec.norm_first)
    return Description("spec", "spec", shape, spec_params(spec), config)


def resolve(spec: EncoderSpec, seed: int, device: str) -> EncoderModel:
    """The spec's encoder; it is its own reference (as the weights are padbench's)."""
    encoder = spec.build(seed, device)
    return EncoderModel(describe(spec), encoder, encoder, device, spec.dtype)
