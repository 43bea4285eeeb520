"""`rowpacked`: sequences packed into fixed-length rows, a block-diagonal mask per row.

The packing of Krell et al. 2021 ("Efficient Sequence Packing without Cross-contamination"):
sequences go first-fit-decreasing into rows of ``row_len`` tokens (the batch's longest sequence,
or a fixed length such as the model's 512), so a batch is ``[rows, row_len]`` with little
padding, and attention is plain SDPA over each row with a bool mask that lets a token see only
its own sequence. Every dense layer runs on the rows' ``rows * row_len`` slots (the few
slots left at the end of a row included, as in the paper), through the same layer code as
`packed`, so the two differ only in the row padding and the attention call.

The layout keeps each slot's sequence and its position inside that sequence: positions restart
per sequence, which is what position embeddings need (this encoder has none). Row padding
slots attend only to themselves, so no mask row is empty on any SDPA backend, and pads never
reach a real token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PadbenchError
from ..layers import encoder_forward, split_heads
from .base import Strategy, register


def first_fit_decreasing(lengths, row_len: int) -> list[list[int]]:
    """Sequence indices per row: longest first, each into the first row it still fits.

    Empty sequences take no slot (they land in the first row). Rows keep the order sequences
    were placed in.
    """
    lens = np.asarray(lengths, dtype=np.int64)
    if lens.size and int(lens.max()) > row_len:
        i = int(np.argmax(lens))
        raise PadbenchError(f"sequence length {int(lens[i])} at index {i} does not fit a row of {row_len}")
    remaining = np.empty(max(lens.size, 1), dtype=np.int64)
    rows: list[list[int]] = []
    for i in np.argsort(-lens, kind="stable"):
        n = lens[i]
        fits = remaining[: len(rows)] >= n
        r = int(np.argmax(fits)) if len(rows) and fits.any() else -1
        if r < 0:
            r = len(rows)
            rows.append([])
            remaining[r] = row_len
        remaining[r] -= n
        rows[r].append(int(i))
    return rows


@dataclass(frozen=True)
class RowLayout:
    """Where every token of a batch sits in ``[rows, row_len]`` (host arrays)."""

    rows: list[list[int]]
    row_len: int
    token_slot: np.ndarray  # [T] flat slot of each packed token, in batch.values order
    sequence: np.ndarray  # [rows * row_len] sequence index of each slot, -1 for row padding
    position: np.ndarray  # [rows * row_len] position inside its sequence (0 for row padding)

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    @property
    def num_slots(self) -> int:
        return len(self.rows) * self.row_len

    @classmethod
    def build(cls, lengths, row_len: int) -> "RowLayout":
        lens = np.asarray(lengths, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lens)])
        rows = first_fit_decreasing(lens, row_len)
        slots = len(rows) * row_len
        token_slot = np.empty(int(offsets[-1]), dtype=np.int64)
        sequence = np.full(slots, -1, dtype=np.int64)
        position = np.zeros(slots, dtype=np.int64)
        for r, row in enumerate(rows):
            cursor = r * row_len
            for i in row:
                n = int(lens[i])
                token_slot[offsets[i] : offsets[i] + n] = np.arange(cursor, cursor + n)
                sequence[cursor : cursor + n] = i
                position[cursor : cursor + n] = np.arange(n)
                cursor += n
        return cls(rows, row_len, token_slot, sequence, position)

    def gather_index(self) -> np.ndarray:
        """Per slot: its token's index in ``values``, or ``T + k`` for the k-th padding slot."""
        tokens = self.token_slot.size
        index = np.empty(self.num_slots, dtype=np.int64)
        index[self.token_slot] = np.arange(tokens)
        pads = self.sequence < 0
        index[pads] = tokens + np.arange(int(pads.sum()))
        return index

    def attention_mask(self, device) -> torch.Tensor:
        """``[rows, 1, row_len, row_len]`` bool, True = may attend: same sequence, or itself for a pad."""
        seg = self.sequence.copy()
        pads = seg < 0
        seg[pads] = -1 - np.flatnonzero(pads)  # a distinct id per padding slot
        seg = torch.from_numpy(seg.reshape(self.num_rows, self.row_len)).to(device)
        return (seg[:, :, None] == seg[:, None, :])[:, None]


def _pad_values(batch, count: int) -> torch.Tensor:
    """``count`` rows of the batch's seeded pad noise (pad contents must not matter)."""
    noise = batch.pad_noise().reshape(-1, batch.d_model)
    if count > noise.shape[0]:
        noise = noise.repeat(-(-count // noise.shape[0]), 1)
    return noise[:count]


@register
class RowPacked(Strategy):
    name = "rowpacked"
    summary = "first-fit-decreasing rows of the batch max, SDPA with a block-diagonal mask per row"

    def __init__(self, encoder, row_len: int | None = None):
        super().__init__(encoder)
        self.row_len = row_len  # None: each batch's longest sequence

    def layout(self, batch) -> RowLayout:
        return RowLayout.build(batch.lengths_list, self.row_len or batch.max_len)

    def __call__(self, batch):
        layout = self.layout(batch)
        rows, width, device = layout.num_rows, layout.row_len, batch.device
        index = layout.gather_index()
        source = torch.cat([batch.values, _pad_values(batch, index.size - batch.num_tokens)])
        x = source[torch.from_numpy(index).to(device)]
        mask = layout.attention_mask(device)

        def attend(q, k, v):
            q, k, v = (split_heads(t, self.nhead).unflatten(0, (rows, width)).transpose(1, 2) for t in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return out.transpose(1, 2).reshape(rows * width, self.d_model)

        out = encoder_forward(self.encoder, x, attend)
        return out[torch.from_numpy(layout.token_slot).to(device)]
