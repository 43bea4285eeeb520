"""`TokenBatch`: a batch of token ids, for models that start with embeddings (Hugging Face encoders).

The same canonical layout as `VarlenBatch` (real tokens packed, ``offsets [B+1]``), holding ids
``[T]`` instead of hidden states. A model's own padded call takes `padded_ids` with
`attention_mask`; padbench's strategies take `embedded(values)`, the packed embeddings as a
`VarlenBatch`, so every strategy runs unchanged. Pads hold seeded random ids (never the pad
token alone: a pad that leaks must change the output), and the embedded batch's pads hold
seeded noise, as for any batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .batch import VarlenBatch
from .lengths import validate_lengths
from .seqlens import SeqLens


@dataclass
class TokenBatch(SeqLens):
    ids: torch.Tensor  # [T] int64 token ids of real tokens, packed
    offsets: torch.Tensor  # [B+1] int64 cumulative lengths, on ids' device
    lengths_list: tuple[int, ...]
    d_model: int  # the model's hidden size: the width of its output
    dtype: torch.dtype  # the model's dtype: outputs and loss weights
    vocab_size: int
    avoid_id: int | None = None  # the pad token: never among the real ids
    pad_seed: int = 1
    pad_scale: float = 1.0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    # Pad mask and pad noise of the embedded batch: they depend on lengths and pad seed only.
    _hidden_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_lengths(cls, lengths, *, vocab_size: int, d_model: int, seed: int = 0, dtype=torch.float32,
                     device="cpu", avoid_id: int | None = None, allow_empty: bool = False) -> "TokenBatch":
        """Seeded random ids with the given lengths; ``avoid_id`` (the pad token) never occurs among them."""
        lens = validate_lengths(lengths, allow_empty=allow_empty)
        gen = torch.Generator().manual_seed(int(seed))
        span = vocab_size - (avoid_id is not None)
        ids = torch.randint(0, span, (int(lens.sum()),), generator=gen)
        if avoid_id is not None:
            ids = ids + (ids >= avoid_id).long()
        offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lens)]).astype(np.int64))
        return cls(ids.to(device), offsets.to(device), tuple(int(n) for n in lens), d_model, dtype, vocab_size,
                   avoid_id, pad_seed=seed + 1)

    def with_pad_noise(self, seed: int, scale: float = 1.0) -> "TokenBatch":
        """The same real tokens with other pad contents (for pad-invariance checks)."""
        return replace(self, pad_seed=seed, pad_scale=scale, _cache={}, _hidden_cache={})

    def with_lengths(self, lengths, *, allow_empty: bool = True) -> "TokenBatch":
        """A fresh seeded batch of this kind with other lengths (empty-sequence checks)."""
        return TokenBatch.from_lengths(lengths, vocab_size=self.vocab_size, d_model=self.d_model, dtype=self.dtype,
                                       device=self.device, allow_empty=allow_empty, avoid_id=self.avoid_id)

    # facts (lengths, batch_size, num_tokens, max_len, padding_ratio, device: `SeqLens`) --------
    @property
    def _packed(self) -> torch.Tensor:
        return self.ids

    # converters (key_padding_mask, positions, unpad, to_list: `SeqLens`) ---------------------
    def attention_mask(self) -> torch.Tensor:
        """``[B, L]`` int64, 1 = real token (Hugging Face's convention)."""
        return (~self.key_padding_mask()).long()

    def padded_ids(self) -> torch.Tensor:
        """``[B, L]`` ids, seeded random ids in pads."""
        if "padded" not in self._cache:
            gen = torch.Generator().manual_seed(int(self.pad_seed))
            ids = torch.randint(0, self.vocab_size, (self.batch_size, self.max_len), generator=gen).to(self.device)
            ids[~self.key_padding_mask()] = self.ids
            self._cache["padded"] = ids
        return self._cache["padded"]

    def embedded(self, values: torch.Tensor) -> VarlenBatch:
        """The packed embeddings ``[T, d]`` of these tokens as a `VarlenBatch` (pads: seeded noise)."""
        return VarlenBatch(values=values, offsets=self.offsets, lengths_list=self.lengths_list,
                           pad_seed=self.pad_seed, pad_scale=self.pad_scale, _cache=self._hidden_cache)
