"""The seeded batches the checker feeds the model: a base batch and its padding variants.

Two kinds of input, one layout: float features ``x [B, L, d]`` for a model taking embeddings
(`make_batches`), or token ids ``[B, L]`` for a Hugging Face encoder's own call
(`make_token_batches`). Both come with ``mask [B, L]`` (True = pad) and the same variants, so
`running`, `compare` and `modes` never ask which kind they hold. ``pad_content`` is a list:
token ids have no single "other noise", so each refill (random ids, id 0, the last id) is its
own variant, named in the findings.
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import PadbenchError

#: the pad noise of the `pad_content` variant is this many times larger than the valid tokens
PAD_NOISE_SCALE = 100.0


@dataclasses.dataclass
class Batch:
    x: torch.Tensor             # [B, L, d] floats, or [B, L] token ids
    mask: torch.Tensor          # True = pad
    lengths: list
    cause: str = ""             # a variant: what changed from the base batch, for findings

    def shapes(self) -> str:
        """The call's inputs, for messages: ``x [B, L, d], key_padding_mask [B, L]`` or the ids' names."""
        B, L = self.mask.shape
        if self.x.is_floating_point():
            return f"x {list(self.x.shape)}, key_padding_mask [{B}, {L}]"
        return f"input_ids [{B}, {L}], attention_mask [{B}, {L}]"


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


def _masks(lengths: list, extra: int):
    L = max(lengths)
    pos = torch.arange(L + extra)
    mask2 = pos[None, :] >= torch.tensor(lengths)[:, None]    # [B, L+extra]
    return mask2[:, :L], mask2


def make_batches(lengths: list, extra: int, d_model: int, seed: int, dtype, device) -> dict:
    """``base`` and its variants ``pad_content`` (a list of one), ``appended_padding``, ``empty_sequence``.

    Drawn in float64 and converted once, so every dtype sees the same valid tokens; pads hold
    noise, never zeros (zeros hide leaks).
    """
    B, L = len(lengths), max(lengths)
    g = torch.Generator().manual_seed(seed)
    valid = torch.randn(B, L, d_model, generator=g, dtype=torch.float64)
    noise = torch.randn(B + 1, L + extra, d_model, generator=g, dtype=torch.float64)
    big = torch.randn(B, L, d_model, generator=g, dtype=torch.float64) * PAD_NOISE_SCALE
    mask0, mask2 = _masks(lengths, extra)

    def fill(values, pads, mask):
        return torch.where(mask[..., None], pads, values)

    base = fill(valid, noise[:B, :L], mask0)
    padded = fill(valid, big, mask0)
    longer = torch.cat([base, noise[:B, L:]], dim=1)
    empty_x = torch.cat([base, noise[B:, :L]], dim=0)
    empty_mask = torch.cat([mask0, torch.ones(1, L, dtype=torch.bool)], dim=0)

    def mk(x, m, ls, cause=""):
        return Batch(x.to(dtype=dtype, device=device), m.to(device), ls, cause)

    return {
        "base": mk(base, mask0, lengths),
        "pad_content": [mk(padded, mask0, lengths, "when the pad contents were refilled with other noise")],
        "appended_padding": mk(longer, mask2, lengths),
        "empty_sequence": mk(empty_x, empty_mask, lengths + [0]),
    }


def make_token_batches(lengths: list, extra: int, vocab_size: int, pad_id: int, seed: int, device) -> dict:
    """The same variants as `make_batches`, as token ids, padded the way a tokenizer pads.

    Real ids are seeded and never ``pad_id`` (RoBERTa numbers positions by counting non-pad
    ids, so a real pad id would move positions without any leak). Pads hold ``pad_id`` in
    ``base``, in the appended columns and in the empty row; ``pad_content`` refills them with
    seeded random ids, then id 0, then the last id (those that differ from ``pad_id``): a model
    that reads pad ids (a mask built from ``input_ids != pad_token_id``, a position count) shows.
    """
    B, L = len(lengths), max(lengths)
    g = torch.Generator().manual_seed(seed)
    real = torch.randint(0, vocab_size - 1, (B, L), generator=g)
    real = real + (real >= pad_id).long()                      # skip pad_id
    random_pads = torch.randint(0, vocab_size, (B, L), generator=g)
    mask0, mask2 = _masks(lengths, extra)
    base = torch.where(mask0, pad_id, real)

    def mk(x, m, ls, cause=""):
        return Batch(x.to(device), m.to(device), ls, cause)

    refills = [(random_pads, "random ids")]
    refills += [(torch.full_like(real, i), f"id {i}") for i in dict.fromkeys((0, vocab_size - 1)) if i != pad_id]
    pad_content = [mk(torch.where(mask0, ids, real), mask0, lengths,
                      f"when the pads held {what} instead of pad_token_id {pad_id}") for ids, what in refills]
    longer = torch.cat([base, torch.full((B, extra), pad_id)], dim=1)
    empty = torch.cat([base, torch.full((1, L), pad_id)], dim=0)
    empty_mask = torch.cat([mask0, torch.ones(1, L, dtype=torch.bool)], dim=0)
    return {
        "base": mk(base, mask0, lengths),
        "pad_content": pad_content,
        "appended_padding": mk(longer, mask2, lengths),
        "empty_sequence": mk(empty, empty_mask, lengths + [0]),
    }
