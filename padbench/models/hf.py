"""`hf:SOURCE`: a Hugging Face encoder of the BERT family, and padbench's strategies over its weights.

A BERT-family layer is exactly a post-norm ``nn.TransformerEncoderLayer`` (in_proj = query,
key and value stacked; out_proj, norm1, linear1, linear2, norm2 the attention output, its
LayerNorm, the intermediate and output dense layers and the output LayerNorm; activation and
each LayerNorm's eps as the model has them). So the model becomes `HFFunction`: its embeddings
computed per packed token (position ids restarting at each sequence) and its layers as an
``nn.TransformerEncoder``, on which every padbench strategy runs unchanged. `hf_sdpa` and
`hf_eager` run the model itself: its own padded call with ``attention_mask``. The reference is
the model itself, in float64, one sequence at a time.
"""

from __future__ import annotations

import copy
import functools
import warnings
import weakref

import torch
from torch import nn

from ..errors import PadbenchError
from ..tokens import TokenBatch
from .base import Bound, Description, Model, Shape, copy_to, count_params, zero_dropout
from .hf_load import FAMILIES, Family, load


class PackedEmbeddings(nn.Module):
    """Word + token type 0 + position embeddings and LayerNorm of packed tokens (the model's own modules)."""

    def __init__(self, hf_embeddings: nn.Module, family: Family, position_offset: int):
        super().__init__()
        self.word_embeddings = hf_embeddings.word_embeddings
        self.token_type_embeddings = hf_embeddings.token_type_embeddings if family.token_types else None
        self.position_embeddings = hf_embeddings.position_embeddings
        self.LayerNorm = hf_embeddings.LayerNorm
        self.position_offset = position_offset

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.word_embeddings(ids)
        if self.token_type_embeddings is not None:
            x = x + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x + self.position_embeddings(positions + self.position_offset))


class HFFunction(nn.Module):
    """The model's function as padbench runs it: `PackedEmbeddings`, then an ``nn.TransformerEncoder``."""

    def __init__(self, embeddings: PackedEmbeddings, encoder: nn.TransformerEncoder, names: dict):
        super().__init__()
        self.embeddings, self.encoder = embeddings, encoder
        self._names = names  # this module's parameter name -> the HF names it holds (split in order)

    def embed(self, batch: TokenBatch) -> torch.Tensor:
        return self.embeddings(batch.ids, batch.positions())

    def from_hf_grads(self, grads: dict) -> dict:
        """The HF model's parameter gradients under this module's names (query, key, value stacked).

        Gradients are compared under these names, whatever ran: a key bias alone has a zero
        gradient (softmax ignores it), so it is judged inside in_proj_bias, as for any encoder.
        """
        return {mine: torch.cat([grads[t] for t in theirs]) for mine, theirs in self._names.items()
                if all(t in grads for t in theirs)}


def _activation(layer: nn.Module, family: Family, config):
    """What the layer's activation is to torch: "gelu"/"relu" by name, else the model's own module."""
    name = getattr(config, family.act_key)
    return name if name in ("gelu", "relu") else copy.deepcopy(layer.get_submodule(family.act))


def convert(model: nn.Module, family: Family) -> HFFunction:
    """`HFFunction` holding copies of ``model``'s weights (same device and dtype)."""
    config = model.config
    layers = model.get_submodule(family.layers)
    first = layers[0]
    d = first.get_submodule(family.q).in_features
    ff = first.get_submodule(family.lin1).out_features
    nhead = getattr(config, family.heads_key)
    template = nn.TransformerEncoderLayer(d, nhead, ff, dropout=0.0, activation=_activation(first, family, config),
                                          layer_norm_eps=first.get_submodule(family.norm1).eps, batch_first=True,
                                          norm_first=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        encoder = nn.TransformerEncoder(template, len(layers), enable_nested_tensor=True)
    encoder.to(device=first.get_submodule(family.q).weight.device, dtype=first.get_submodule(family.q).weight.dtype)
    names = {}
    with torch.no_grad():
        for i, (hf_layer, layer) in enumerate(zip(layers, encoder.layers)):
            prefix, mine = f"{family.layers}.{i}.", f"encoder.layers.{i}."
            parts = {k: hf_layer.get_submodule(getattr(family, k)) for k in ("q", "k", "v", "out", "norm1", "lin1",
                                                                             "lin2", "norm2")}
            mha = layer.self_attn
            for kind in ("weight", "bias"):
                getattr(mha, f"in_proj_{kind}").copy_(torch.cat([getattr(parts[k], kind) for k in "qkv"]))
                names[f"{mine}self_attn.in_proj_{kind}"] = [f"{prefix}{getattr(family, k)}.{kind}" for k in "qkv"]
            for ours, theirs in (("self_attn.out_proj", "out"), ("linear1", "lin1"), ("linear2", "lin2"),
                                 ("norm1", "norm1"), ("norm2", "norm2")):
                target = layer.get_submodule(ours)
                for kind in ("weight", "bias"):
                    getattr(target, kind).copy_(getattr(parts[theirs], kind))
                    names[f"{mine}{ours}.{kind}"] = [f"{prefix}{getattr(family, theirs)}.{kind}"]
            layer.norm1.eps, layer.norm2.eps = parts["norm1"].eps, parts["norm2"].eps
    embeddings = PackedEmbeddings(copy.deepcopy(model.embeddings), family, family.position_offset(config))
    for name, _ in embeddings.named_parameters():
        names[f"embeddings.{name}"] = [f"embeddings.{name}"]
    return HFFunction(embeddings, encoder, names)


def describe(source: str, hf_config: str = "", seed: int = 0) -> Description:
    model, family, weights = load(source, hf_config, seed)
    config = model.config
    fn = _function(source, hf_config, seed)
    layer = fn.encoder.layers[0]
    act = getattr(config, family.act_key)
    shape = Shape(layer.self_attn.embed_dim, layer.self_attn.num_heads, layer.linear1.out_features,
                  len(fn.encoder.layers), act, False)
    info = {"model_type": config.model_type, **{k: getattr(shape, k) for k in ("d_model", "nhead", "dim_feedforward",
                                                                                 "num_layers")},
            "activation": act, "layer_norm_eps": layer.norm1.eps, "vocab_size": config.vocab_size,
            "max_position_embeddings": config.max_position_embeddings, "weights": weights}
    if hf_config:
        info["overrides"] = hf_config
    return Description("hf", f"hf:{source}", shape, count_params(model), info, family.max_positions(config))


@functools.lru_cache(maxsize=4)
def _function(source: str, hf_config: str, seed: int) -> HFFunction:
    model, family, _ = load(source, hf_config, seed)
    return convert(model, family)


BATCH_CACHE = 32


class HFModel(Model):
    """An HF encoder at one (device, dtype): its own copies for `hf_*` strategies, `HFFunction` for the rest."""

    def __init__(self, source: str, hf_config: str, seed: int, device: str, dtype: torch.dtype):
        super().__init__(describe(source, hf_config, seed), device, dtype)
        self._source, self.family, _ = load(source, hf_config, seed)
        self.function = copy_to(_function(source, hf_config, seed), device, dtype)
        self._copies: dict[str, nn.Module] = {}
        self._batches: dict = {}

    def hf_copy(self, name: str) -> nn.Module:
        """A copy of the HF model for strategy ``name`` (each sets its own attention implementation)."""
        if name not in self._copies:
            self._copies[name] = zero_dropout(copy_to(self._source, self.device, self.dtype))
        return self._copies[name]

    def bind(self, strategy: str, **options) -> Bound:
        from ..strategies import strategy_class

        cls = strategy_class(strategy)
        if cls.runs == "hf":
            module = self.hf_copy(strategy)
            return Bound(module, cls(module, **options), rename=self.function.from_hf_grads)
        fn = self.function
        return Bound(fn, cls(fn.encoder, **options), embed=fn.embed)

    def batch(self, lengths: tuple, seed: int) -> TokenBatch:
        key = (tuple(lengths), seed)
        if key not in self._batches:
            limit = self.description.max_len
            if max(lengths, default=0) > limit:
                raise PadbenchError(f"{self.description.source} takes at most {limit} tokens a sequence "
                                    f"(max_position_embeddings); these lengths reach {max(lengths)}: lower --max-len")
            cfg = self._source.config
            self._batches[key] = TokenBatch.from_lengths(lengths, vocab_size=cfg.vocab_size,
                                                         d_model=self.description.shape.d_model, seed=seed,
                                                         dtype=self.dtype, device=self.device,
                                                         avoid_id=cfg.pad_token_id)
            while len(self._batches) > BATCH_CACHE:  # an epoch's many batches: keep the recent ones
                self._batches.pop(next(iter(self._batches)))
        return self._batches[key]

    def reference_module(self) -> nn.Module:
        if "reference" not in self._copies:
            ref = copy.deepcopy(self._source)
            ref.set_attn_implementation("eager")  # the plain math, no fused kernel
            self._copies["reference"] = ref
        return self._copies["reference"]

    def reference_inputs(self, batch: TokenBatch) -> list[torch.Tensor]:
        return [ids.cpu() for ids in batch.to_list()]

    @staticmethod
    def reference_forward(ref: nn.Module, seq: torch.Tensor) -> torch.Tensor:
        return ref(input_ids=seq[None]).last_hidden_state[0]

    def reference_grads(self, grads: dict) -> dict:
        return self.function.from_hf_grads(grads)


def resolve(source: str, hf_config: str, seed: int, device: str, dtype: torch.dtype) -> HFModel:
    return HFModel(source, hf_config, seed, device, dtype)


# ---------------------------------------------------------------------------- the hf_* strategies
def module_reason(name: str, module: nn.Module) -> str | None:
    """Why strategy ``name`` (the model's own call) cannot run ``module``, or None."""
    model_type = getattr(getattr(module, "config", None), "model_type", None)
    if model_type in FAMILIES and hasattr(module, "set_attn_implementation"):
        return None
    what = f"model type {model_type!r}" if model_type else f"a {type(module).__name__}"
    return (f"{name} runs a Hugging Face encoder's own padded call ({', '.join(FAMILIES)}; --model hf:SOURCE), "
            f"not {what}")


def padded_call(model: nn.Module, batch: TokenBatch) -> torch.Tensor:
    """The model's own call on padded ids with ``attention_mask``: the last hidden state at real tokens."""
    out = model(input_ids=batch.padded_ids(), attention_mask=batch.attention_mask()).last_hidden_state
    return batch.unpad(out)


# ---------------------------------------------------------------------------- packed, for users
_converted: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _fingerprint(model: nn.Module) -> tuple:
    return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in model.parameters())


def _converted_for(model: nn.Module) -> HFFunction:
    family = FAMILIES.get(getattr(getattr(model, "config", None), "model_type", None))
    if family is None:
        raise PadbenchError(f"packed_forward takes a Hugging Face {', '.join(FAMILIES)} model, "
                            f"not a {type(model).__name__}")
    hit = _converted.get(model)
    if hit is None or hit[0] != _fingerprint(model):
        with torch.no_grad():
            hit = (_fingerprint(model), convert(model, family).eval())
        _converted[model] = hit
    return hit[1]


def packed_forward(model: nn.Module, input_ids_list, *, strategy: str = "packed") -> list[torch.Tensor]:
    """``model``'s last hidden state for each sequence, run packed through padbench (inference).

    ``model`` is a Hugging Face BertModel, RobertaModel or DistilBertModel; ``input_ids_list``
    holds one 1-D id tensor per sequence (real tokens only, no padding). Each output is
    ``[len_i, hidden]``, what ``model(ids, attention_mask).last_hidden_state`` gives at real
    tokens. Weights are copied once per model (again whenever they change); no gradients flow.
    ``strategy``: any padbench strategy over the model's encoder layers (default `packed`).
    """
    from ..strategies import get

    fn = _converted_for(model)
    device = next(model.parameters()).device
    seqs = [torch.as_tensor(s, dtype=torch.long, device=device).reshape(-1) for s in input_ids_list]
    lengths = [len(s) for s in seqs]
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device=device)
    cfg = model.config
    layer = fn.encoder.layers[0]
    ids = torch.cat(seqs) if seqs else torch.zeros(0, dtype=torch.long, device=device)
    batch = TokenBatch(ids, offsets, tuple(lengths), layer.self_attn.embed_dim, layer.linear1.weight.dtype,
                       cfg.vocab_size)
    if not lengths or max(lengths) == 0:
        return [torch.zeros(0, batch.d_model, device=device, dtype=batch.dtype) for _ in lengths]
    limit = FAMILIES[cfg.model_type].max_positions(cfg)
    if max(lengths) > limit:
        raise PadbenchError(f"a sequence of {max(lengths)} tokens is over the model's {limit} positions")
    with torch.inference_mode():
        out = get(strategy, fn.encoder)(batch.embedded(fn.embed(batch)))
    return list(out.split(lengths))
