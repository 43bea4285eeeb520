"""Load a Hugging Face encoder for `hf:SOURCE`, without downloading anything.

SOURCE is a local directory holding ``config.json`` (and its weights, if saved) or a model type
(``bert``, ``roberta``, ``distilbert``) built from its default configuration; ``--hf-config
key=value,...`` overrides either. Without weights, every parameter is drawn from a seeded
generator (biases and LayerNorm affine included, non-zero, as for `spec`: a strategy that drops
a bias cannot pass). Dropout is switched off: padbench measures the deterministic function.
`transformers` is an optional dependency (``pip install padbench[hf]``).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

from ..errors import PadbenchError
from .base import zero_dropout

INSTALL = "hf: models need transformers: pip install padbench[hf]"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class Family:
    """Where a model family keeps what padbench maps onto ``nn.TransformerEncoderLayer``."""

    model_type: str
    layers: str  # the ModuleList of layers
    q: str
    k: str
    v: str
    out: str
    norm1: str  # after attention (post-norm)
    lin1: str
    lin2: str
    norm2: str  # after the feed-forward block
    act: str  # the activation module inside a layer
    act_key: str  # its name in the config
    heads_key: str
    token_types: bool  # BERT and RoBERTa add token type 0's embedding

    def position_offset(self, config) -> int:
        """RoBERTa numbers real tokens from pad_token_id + 1 (fairseq); the others from 0."""
        return config.pad_token_id + 1 if self.model_type == "roberta" else 0

    def max_positions(self, config) -> int:
        return config.max_position_embeddings - self.position_offset(config)


_BERT = dict(layers="encoder.layer", q="attention.self.query", k="attention.self.key", v="attention.self.value",
             out="attention.output.dense", norm1="attention.output.LayerNorm", lin1="intermediate.dense",
             lin2="output.dense", norm2="output.LayerNorm", act="intermediate.intermediate_act_fn",
             act_key="hidden_act", heads_key="num_attention_heads", token_types=True)
FAMILIES = {
    "bert": Family("bert", **_BERT),
    "roberta": Family("roberta", **_BERT),
    "distilbert": Family("distilbert", layers="transformer.layer", q="attention.q_lin", k="attention.k_lin",
                         v="attention.v_lin", out="attention.out_lin", norm1="sa_layer_norm", lin1="ffn.lin1",
                         lin2="ffn.lin2", norm2="output_layer_norm", act="ffn.activation", act_key="activation",
                         heads_key="n_heads", token_types=False),
}


def transformers():
    try:
        import transformers as tf
    except ImportError:
        raise PadbenchError(INSTALL) from None
    tf.logging.set_verbosity_error()
    return tf


def parse_overrides(text: str) -> dict:
    """``key=value,...`` -> dict; values read as int, float, true/false/none, else text."""
    out = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PadbenchError(f"--hf-config takes key=value,key=value; got {item!r}")
        out[key.strip()] = _value(raw.strip())
    return out


def _value(raw: str):
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _first_line(exc: Exception) -> str:
    """The error's first line, with the next one when the first only introduces it (ends with ':')."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def _check_keys(config_cls, overrides: dict) -> None:
    known = set(config_cls().to_dict()) | set(getattr(config_cls, "attribute_map", {}))
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise PadbenchError(f"--hf-config: {config_cls.__name__} has no {', '.join(unknown)}")


def _config(source: str, overrides: dict):
    """(config, directory holding weights or None) for ``source``; nothing is downloaded."""
    tf = transformers()
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, "config.json")):
            raise PadbenchError(f"hf:{source}: the directory has no config.json")
        try:
            config = tf.AutoConfig.from_pretrained(source, local_files_only=True)
        except Exception as exc:
            raise PadbenchError(f"hf:{source}: cannot read config.json: {_first_line(exc)}") from None
        family = FAMILIES.get(config.model_type)
        if family is None:
            raise PadbenchError(f"hf:{source}: model type {config.model_type!r} is not supported "
                                f"(supported: {', '.join(FAMILIES)})")
        _check_keys(type(config), overrides)
        for k, v in overrides.items():
            setattr(config, k, v)
        weights = any(os.path.isfile(os.path.join(source, f)) for f in WEIGHT_FILES)
        return config, (source if weights else None)
    if source not in FAMILIES:
        raise PadbenchError(f"hf:{source}: not a local directory with config.json, nor a model type "
                            f"({', '.join(FAMILIES)}); nothing is downloaded")
    config_cls = tf.AutoConfig.for_model(source).__class__
    _check_keys(config_cls, overrides)
    try:
        return config_cls(**overrides), None
    except Exception as exc:
        raise PadbenchError(f"hf:{source}: bad --hf-config: {_first_line(exc)}") from None


def _check_encoder(source: str, config) -> None:
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        raise PadbenchError(f"hf:{source}: a decoder configuration (is_decoder/add_cross_attention) is not an encoder")
    pet = getattr(config, "position_embedding_type", None)
    if pet not in (None, "absolute"):
        raise PadbenchError(f"hf:{source}: position_embedding_type {pet!r} is not supported (absolute only)")
    act = getattr(config, FAMILIES[config.model_type].act_key)
    if not isinstance(act, str):
        raise PadbenchError(f"hf:{source}: the activation must be named in the config, got {type(act).__name__}")


def seed_weights(model: torch.nn.Module, seed: int, std: float) -> None:
    """Every parameter from a seeded generator: matrices N(0, std), LayerNorm weights near 1, the rest near 0."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(std * torch.randn(p.shape, generator=gen))
            elif "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


@functools.lru_cache(maxsize=4)
def load(source: str, hf_config: str = "", seed: int = 0):
    """(HF model on CPU in float32, family, {'weights': ...}) for ``hf:source``; cached per process."""
    overrides = parse_overrides(hf_config)
    config, weights_dir = _config(source, overrides)
    _check_encoder(source, config)
    tf = transformers()
    try:
        if weights_dir:
            model = tf.AutoModel.from_pretrained(weights_dir, config=config, local_files_only=True,
                                                 dtype=torch.float32, attn_implementation="sdpa")
        else:
            model = tf.AutoModel.from_config(config, attn_implementation="sdpa", dtype=torch.float32)
            seed_weights(model, seed, getattr(config, "initializer_range", 0.02))
    except PadbenchError:
        raise
    except Exception as exc:
        raise PadbenchError(f"hf:{source}: cannot build the model: {_first_line(exc)}") from None
    weights = f"from {weights_dir}" if weights_dir else "random (seeded)"
    return zero_dropout(model.float().eval()), FAMILIES[config.model_type], weights
