"""Models: where the function every strategy computes comes from.

``model`` strings (what `Case.model` holds):

- ``spec``: padbench's encoder from `EncoderSpec` sizes, seeded weights;
- ``MODULE:CALLABLE``: the user's own ``nn.TransformerEncoder`` (`user`), its own weights;
- ``hf:SOURCE``: a Hugging Face BERT-family encoder (`hf`), a local directory or a model type,
  with ``hf_config`` overrides.

`resolve` builds a model at one (device, dtype) once per process; `describe` names it for
records without building anything on a device.
"""

from __future__ import annotations

import functools

import torch

from ..errors import PadbenchError
from ..model import EncoderSpec
from . import spec as _spec
from . import user as _user
from .base import Bound, Description, Model, Shape

__all__ = ["Bound", "Description", "Model", "Shape", "WEIGHT_SEED", "describe", "kind", "resolve"]

# The seed of a random `hf:` model's weights: fixed, so that every case and draw runs one model.
WEIGHT_SEED = 0


def kind(model: str) -> str:
    """``spec``, ``user`` or ``hf`` for a model string; one clear line for anything else."""
    if not isinstance(model, str) or not model:
        raise PadbenchError(f"--model takes spec, MODULE:CALLABLE or hf:SOURCE, got {model!r}")
    if model == "spec":
        return "spec"
    if model.startswith("hf:"):
        if not model[3:]:
            raise PadbenchError("hf: needs a source: a local directory with config.json, or bert, roberta, distilbert")
        return "hf"
    if ":" not in model:
        raise PadbenchError(f"--model takes spec, MODULE:CALLABLE or hf:SOURCE, got {model!r}")
    return "user"


def _check_options(model: str, hf_config: str) -> str:
    k = kind(model)
    if hf_config and k != "hf":
        raise PadbenchError(f"--hf-config applies to hf: models only, not {model!r}")
    return k


def describe(model: str = "spec", hf_config: str = "", spec: EncoderSpec | None = None, seed: int = 0) -> Description:
    """The model's kind, source, configuration, parameter count and sizes (loads it once per process)."""
    k = _check_options(model, hf_config)
    if k == "spec":
        return _spec.describe(spec or EncoderSpec())
    if k == "user":
        return _user.describe(model)
    from . import hf

    return hf.describe(model[3:], hf_config, WEIGHT_SEED)


@functools.lru_cache(maxsize=8)
def _resolve(model: str, hf_config: str, spec: EncoderSpec | None, dtype: torch.dtype, seed: int, device: str) -> Model:
    k = _check_options(model, hf_config)
    if k == "spec":
        return _spec.resolve(spec, seed, device)
    if k == "user":
        return _user.resolve(model, device, dtype)
    from . import hf

    return hf.resolve(model[3:], hf_config, seed, device, dtype)


def resolve(model: str, hf_config: str, spec: EncoderSpec, seed: int, device: str) -> Model:
    """``model`` at ``device`` in ``spec.dtype``, built once per process.

    ``spec`` gives the sizes of a ``spec`` model and the dtype of any. A spec model's weights
    are drawn from ``seed``; any other model keeps its weights whatever the seed (which draws
    batches): the user's own, or an `hf:` model's random ones drawn from `WEIGHT_SEED`.
    """
    if kind(model) == "spec":
        return _resolve(model, hf_config, spec, spec.dtype, seed, device)
    return _resolve(model, hf_config, None, spec.dtype, WEIGHT_SEED, device)
