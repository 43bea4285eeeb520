"""`VarlenBatch`: the one canonical batch every strategy starts from.

Real tokens only, packed as ``values [T, d]`` with ``offsets [B+1]`` and ``lengths [B]``.
Converters build what each strategy needs; pad positions are filled with seeded noise,
never zeros, because zeros hide masking bugs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .errors import PadbenchError
from .lengths import validate_lengths
from .seqlens import SeqLens


def _noise(shape, seed: int, dtype, device) -> torch.Tensor:
    """Seeded standard normal noise, drawn on the CPU so every device sees the same values."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


def _check_finite(t: torch.Tensor, what: str) -> None:
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise PadbenchError(f"{what} contains NaN or Inf")


@dataclass
class VarlenBatch(SeqLens):
    values: torch.Tensor  # [T, d] real tokens, packed
    offsets: torch.Tensor  # [B+1] int64 cumulative lengths, on values' device
    lengths_list: tuple[int, ...]  # host copy: strategies loop over it without device syncs
    pad_seed: int = 1
    pad_scale: float = 1.0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # construction -----------------------------------------------------------------------
    @classmethod
    def from_lengths(
        cls,
        lengths,
        d_model: int,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        max_len: int | None = None,
        allow_empty: bool = False,
    ) -> "VarlenBatch":
        """A batch of seeded random tokens with the given lengths."""
        lens = validate_lengths(lengths, max_len, allow_empty=allow_empty)
        if not isinstance(d_model, int) or d_model < 1:
            raise PadbenchError(f"d_model must be a positive integer, got {d_model!r}")
        values = _noise((int(lens.sum()), d_model), seed, dtype, device)
        return cls._make(values, lens, pad_seed=seed + 1)

    @classmethod
    def from_padded(cls, x: torch.Tensor, key_padding_mask: torch.Tensor, *,
                    allow_empty: bool = False) -> "VarlenBatch":
        """Pack a padded batch; the mask is bool ``[B, L]``, True = pad, left-aligned."""
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise PadbenchError(f"x must be a [B, L, d] tensor, got {getattr(x, 'shape', type(x))}")
        mask = key_padding_mask
        if not isinstance(mask, torch.Tensor):
            raise PadbenchError(f"key_padding_mask must be a bool tensor, got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise PadbenchError(f"key_padding_mask must be bool (True = pad), got {mask.dtype}")
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise PadbenchError(f"key_padding_mask shape {tuple(mask.shape)} does not match "
                                f"x's [B, L] = {tuple(x.shape[:2])}")
        if mask.device != x.device:
            raise PadbenchError(f"key_padding_mask is on {mask.device} but x is on {x.device}")
        valid = ~mask
        lengths = valid.sum(dim=1)
        # Left-aligned: position j is valid exactly when j < length.
        pos = torch.arange(mask.shape[1], device=mask.device)
        aligned = pos[None, :] < lengths[:, None]
        if not torch.equal(aligned, valid):
            bad = int((aligned != valid).any(dim=1).nonzero()[0])
            raise PadbenchError(f"key_padding_mask row {bad} is not left-aligned "
                                "(valid tokens must come first, then padding)")
        values = x[valid]
        _check_finite(values, "x at valid positions")
        lens = validate_lengths(lengths.cpu().numpy(), allow_empty=allow_empty)
        return cls._make(values, lens)

    @classmethod
    def _make(cls, values: torch.Tensor, lens: np.ndarray, pad_seed: int = 1) -> "VarlenBatch":
        _check_finite(values, "input values")
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        return cls(
            values=values,
            offsets=torch.from_numpy(offsets).to(values.device),
            lengths_list=tuple(int(n) for n in lens),
            pad_seed=pad_seed,
        )

    def with_pad_noise(self, seed: int, scale: float = 1.0) -> "VarlenBatch":
        """The same real tokens with other pad contents (for pad-invariance checks)."""
        return replace(self, pad_seed=seed, pad_scale=scale, _cache={})

    def to(self, device=None, dtype=None) -> "VarlenBatch":
        values = self.values.to(device=device, dtype=dtype)
        return replace(self, values=values, offsets=self.offsets.to(values.device), _cache={})

    # facts (lengths, batch_size, num_tokens, max_len, padding_ratio, device: `SeqLens`) --------
    @property
    def _packed(self) -> torch.Tensor:
        return self.values

    @property
    def d_model(self) -> int:
        return int(self.values.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    # converters (key_padding_mask, positions, unpad, to_list: `SeqLens`) ---------------------
    def to_padded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, L, d]`` with seeded noise in pads, and its key padding mask."""
        mask = self.key_padding_mask()
        x = self.pad_noise().clone()
        x[~mask] = self.values
        return x, mask

    def pad_noise(self) -> torch.Tensor:
        """The seeded ``[B, L, d]`` noise that pad positions hold (cached)."""
        if "pad_noise" not in self._cache:
            shape = (self.batch_size, self.max_len, self.d_model)
            self._cache["pad_noise"] = _noise(shape, self.pad_seed, self.dtype, self.device) * self.pad_scale
        return self._cache["pad_noise"]

    def to_jagged(self) -> torch.Tensor:
        """Jagged nested tensor ``[B, j, d]`` (a view of ``values``: gradients flow)."""
        return torch.nested.nested_tensor_from_jagged(self.values, self.offsets, max_seqlen=self.max_len)

    def to_nested(self) -> torch.Tensor:
        """Strided nested tensor (a copy)."""
        return torch.nested.as_nested_tensor(self.to_list(), layout=torch.strided)
