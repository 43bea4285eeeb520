"""Example models for `padbench check`: some clean, some leaking padding.

Every factory takes no argument, returns a small seeded ``nn.Module`` with
``D_MODEL = 16`` features, and its forward is ``(x [B, L, d], key_padding_mask
[B, L] bool, True = pad)``.  `EXPECTED` says what `check_padding` must find for
each: the set of ``(check, mode)`` pairs with a violation (empty = clean).

============================  =============  ==================================================
factory                       output         padding
============================  =============  ==================================================
``transformer_encoder``       per-token      clean (eval fast path returns zeros at pads: fine)
``masked_mean_pool``          per-sequence   clean (mean over valid tokens, empty row -> 0)
``masked_max_pool``           per-sequence   clean (max over valid tokens, empty row -> 0)
``unmasked_mean_pool``        per-sequence   leaks: the mean runs over the pads too
``ignores_mask``              per-token      leaks: the encoder never sees the mask
``neg_inf_attention``         per-token      NaN: ``-inf`` additive mask, a fully padded row
                                             softmaxes over all ``-inf`` (forward and gradients)
``batchnorm_tokens``          per-token      leaks in train mode only: BatchNorm batch
                                             statistics include pad tokens
============================  =============  ==================================================
"""
from __future__ import annotations

import math

import torch
from torch import nn

D_MODEL = 16
NHEAD = 2
FF = 32

__all__ = [
    "D_MODEL", "EXPECTED",
    "transformer_encoder", "masked_mean_pool", "masked_max_pool", "unmasked_mean_pool",
    "ignores_mask", "neg_inf_attention", "batchnorm_tokens",
]

_LEAK = {(c, m) for c in ("pad_content", "appended_padding") for m in ("train", "eval")}

#: (check, mode) pairs that `check_padding` must flag for each factory (empty: clean)
EXPECTED = {
    "transformer_encoder": set(),
    "masked_mean_pool": set(),
    "masked_max_pool": set(),
    # rows do not interact, so adding an all-pad row changes nothing for these two
    "unmasked_mean_pool": _LEAK,
    "ignores_mask": _LEAK,
    "neg_inf_attention": {("empty_sequence", "train"), ("empty_sequence", "eval")},
    "batchnorm_tokens": {("pad_content", "train"), ("appended_padding", "train"),
                         ("empty_sequence", "train")},
}


def _seeded(build, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _encoder(num_layers: int = 1) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=True)


class TransformerEncoderModel(nn.Module):
    """Per-token ``nn.TransformerEncoder`` given the mask as ``src_key_padding_mask``: clean."""

    def __init__(self):
        super().__init__()
        self.encoder = _encoder(2)

    def forward(self, x, key_padding_mask):
        return self.encoder(x, src_key_padding_mask=key_padding_mask)


class MaskedMeanPool(nn.Module):
    """Encoder, then the mean over valid tokens only, then a linear head: clean."""

    def __init__(self):
        super().__init__()
        self.encoder = _encoder()
        self.head = nn.Linear(D_MODEL, 4)

    def forward(self, x, key_padding_mask):
        h = self.encoder(x, src_key_padding_mask=key_padding_mask)
        keep = (~key_padding_mask).unsqueeze(-1).to(h.dtype)
        # multiply by 0/1 would turn a NaN or Inf at a pad into NaN: select instead
        h = torch.where(key_padding_mask.unsqueeze(-1), torch.zeros_like(h), h)
        pooled = h.sum(1) / keep.sum(1).clamp(min=1)     # an empty row pools to 0, not 0/0
        return self.head(pooled)


class MaskedMaxPool(nn.Module):
    """Encoder, then the max over valid tokens only (an empty row gives 0), then a head: clean."""

    def __init__(self):
        super().__init__()
        self.encoder = _encoder()
        self.head = nn.Linear(D_MODEL, 4)

    def forward(self, x, key_padding_mask):
        h = self.encoder(x, src_key_padding_mask=key_padding_mask)
        h = h.masked_fill(key_padding_mask.unsqueeze(-1), -math.inf)
        pooled = h.max(dim=1).values
        empty = key_padding_mask.all(dim=1, keepdim=True)
        pooled = torch.where(empty, torch.zeros_like(pooled), pooled)   # max over nothing is -inf
        return self.head(pooled)


class UnmaskedMeanPool(nn.Module):
    """Masked encoder, but the pooling averages over every position, pads included: leaks."""

    def __init__(self):
        super().__init__()
        self.encoder = _encoder()
        self.head = nn.Linear(D_MODEL, 4)

    def forward(self, x, key_padding_mask):
        h = self.encoder(x, src_key_padding_mask=key_padding_mask)
        return self.head(h.mean(dim=1))


class IgnoresMask(nn.Module):
    """Per-token encoder that never passes the mask on: valid tokens attend to pads (leaks)."""

    def __init__(self):
        super().__init__()
        self.encoder = _encoder()

    def forward(self, x, key_padding_mask):
        return self.encoder(x)


class NegInfAttention(nn.Module):
    """Hand-written single-head attention with an additive ``-inf`` mask.

    Correct for every row that has at least one valid token; a fully padded row
    softmaxes over all ``-inf`` scores and gives NaN, in the forward and in the
    parameter gradients even when the loss leaves that row out.
    """

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.out = nn.Linear(D_MODEL, D_MODEL)
        self.norm = nn.LayerNorm(D_MODEL)

    def forward(self, x, key_padding_mask):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(D_MODEL)
        bias = torch.zeros_like(key_padding_mask, dtype=x.dtype).masked_fill(key_padding_mask, -math.inf)
        attn = torch.softmax(scores + bias.unsqueeze(1), dim=-1)
        return self.norm(x + self.out(attn @ v))


class BatchNormTokens(nn.Module):
    """Linear, then BatchNorm1d over the features of *all* B*L tokens, pads included.

    Train mode normalizes with batch statistics that include pad tokens: leaks.
    Eval mode uses the running statistics, per token: clean.
    """

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(D_MODEL, D_MODEL)
        self.bn = nn.BatchNorm1d(D_MODEL)

    def forward(self, x, key_padding_mask):
        h = self.proj(x)                                   # [B, L, d]
        return self.bn(h.transpose(1, 2)).transpose(1, 2)  # BatchNorm1d wants [B, C, L]


def transformer_encoder() -> nn.Module:
    return _seeded(TransformerEncoderModel)


def masked_mean_pool() -> nn.Module:
    return _seeded(MaskedMeanPool)


def masked_max_pool() -> nn.Module:
    return _seeded(MaskedMaxPool)


def unmasked_mean_pool() -> nn.Module:
    return _seeded(UnmaskedMeanPool)


def ignores_mask() -> nn.Module:
    return _seeded(IgnoresMask)


def neg_inf_attention() -> nn.Module:
    return _seeded(NegInfAttention)


def batchnorm_tokens() -> nn.Module:
    return _seeded(BatchNormTokens)
