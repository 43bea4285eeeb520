"""`SeqLens`: the facts every packed batch derives from its lengths, in one place.

`VarlenBatch` (hidden states ``values [T, d]``) and `TokenBatch` (token ids ``ids [T]``) share
one layout: real tokens packed along dim 0, ``offsets [B+1]`` int64 cumulative lengths on the
packed tensor's device, and ``lengths_list``, a host copy of the lengths that strategies loop
over without device syncs. This mixin holds what follows from that layout: the lengths, batch
size, longest sequence, token count, padding ratio, device, the key padding mask, each token's
position in its sequence, and unpadding and splitting. A class using it names its packed
tensor in ``_packed`` and keeps a ``_cache`` dict.
"""

from __future__ import annotations

import torch

from .lengths import padding_ratio


class SeqLens:
    """Lengths-derived facts of a packed batch; needs ``offsets``, ``lengths_list``, ``_cache``, ``_packed``."""

    @property
    def _packed(self) -> torch.Tensor:
        """The packed ``[T, ...]`` tensor of real tokens."""
        raise NotImplementedError

    # facts ---------------------------------------------------------------------------------
    @property
    def lengths(self) -> torch.Tensor:
        """``[B]`` int64 sequence lengths, on the batch's device."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def batch_size(self) -> int:
        return len(self.lengths_list)

    @property
    def num_tokens(self) -> int:
        return int(self._packed.shape[0])

    @property
    def max_len(self) -> int:
        """Longest sequence in this batch (the padded width)."""
        return max(self.lengths_list)

    @property
    def padding_ratio(self) -> float:
        return padding_ratio(self.lengths_list)

    @property
    def device(self) -> torch.device:
        return self._packed.device

    # converters ----------------------------------------------------------------------------
    def key_padding_mask(self) -> torch.Tensor:
        """``[B, L]`` bool, True = pad, left-aligned."""
        if "mask" not in self._cache:
            pos = torch.arange(self.max_len, device=self.device)
            self._cache["mask"] = pos[None, :] >= self.lengths[:, None]
        return self._cache["mask"]

    def positions(self) -> torch.Tensor:
        """``[T]`` position of every token inside its own sequence (restarting at 0 per sequence)."""
        if "positions" not in self._cache:
            starts = torch.repeat_interleave(self.offsets[:-1], self.lengths, output_size=self.num_tokens)
            self._cache["positions"] = torch.arange(self.num_tokens, device=self.device) - starts
        return self._cache["positions"]

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """Packed ``[T, ...]`` valid positions of a ``[B, L, ...]`` output."""
        return padded[~self.key_padding_mask()]

    def to_list(self) -> list[torch.Tensor]:
        """One ``[L_i, ...]`` view of the packed tensor per sequence."""
        return list(self._packed.split(self.lengths_list))
