"""The seeded batches the checker feeds the model: a base batch and its three padding variants."""

from __future__ import annotations

import dataclasses

import torch

from ..errors import PadbenchError

#: the pad noise of the `pad_content` variant is this many times larger than the valid tokens
PAD_NOISE_SCALE = 100.0


@dataclasses.dataclass
class Batch:
    x: torch.Tensor
    mask: torch.Tensor          # True = pad
    lengths: list


def default_lengths(batch_size: int, max_len: int, seed: int) -> list:
    """``batch_size`` seeded lengths in ``[1, max_len]``: one full row and one clearly padded row."""
    if batch_size < 2:
        raise PadbenchError(f"batch_size must be >= 2 (one full and one padded sequence), got {batch_size}")
    if max_len < 2:
        raise PadbenchError(f"max_len must be >= 2 so that a sequence can be padded, got {max_len}")
    if batch_size == max_len:
        # keep B != L so that shapes stay unambiguous even to a human reading them
        max_len += 1
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (batch_size,), generator=g).tolist()
    perm = torch.randperm(batch_size, generator=g).tolist()
    lengths[perm[0]] = max_len
    lengths[perm[1]] = max(1, min(lengths[perm[1]], max_len // 2))
    return lengths


def make_batches(lengths: list, extra: int, d_model: int, seed: int, dtype, device) -> dict:
    """``base`` and its variants ``pad_content``, ``appended_padding``, ``empty_sequence``.

    Drawn in float64 and converted once, so every dtype sees the same valid tokens; pads hold
    noise, never zeros (zeros hide leaks).
    """
    B, L = len(lengths), max(lengths)
    g = torch.Generator().manual_seed(seed)
    valid = torch.randn(B, L, d_model, generator=g, dtype=torch.float64)
    noise = torch.randn(B + 1, L + extra, d_model, generator=g, dtype=torch.float64)
    big = torch.randn(B, L, d_model, generator=g, dtype=torch.float64) * PAD_NOISE_SCALE
    pos = torch.arange(L + extra)
    lens = torch.tensor(lengths)
    mask2 = pos[None, :] >= lens[:, None]              # [B, L+extra]
    mask0 = mask2[:, :L]

    def fill(values, pads, mask):
        return torch.where(mask[..., None], pads, values)

    base = fill(valid, noise[:B, :L], mask0)
    padded = fill(valid, big, mask0)
    longer = torch.cat([base, noise[:B, L:]], dim=1)
    empty_x = torch.cat([base, noise[B:, :L]], dim=0)
    empty_mask = torch.cat([mask0, torch.ones(1, L, dtype=torch.bool)], dim=0)

    def mk(x, m, ls):
        return Batch(x.to(dtype=dtype, device=device), m.to(device), ls)

    return {
        "base": mk(base, mask0, lengths),
        "pad_content": mk(padded, mask0, lengths),
        "appended_padding": mk(longer, mask2, lengths),
        "empty_sequence": mk(empty_x, empty_mask, lengths + [0]),
    }
