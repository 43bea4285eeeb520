"""`bucketed`: sort by length and pad only within buckets of similar length."""

from __future__ import annotations

import numpy as np
import torch

from .base import Strategy, register
from .padded import standard_path


def bucket_indices(lengths, num_buckets: int) -> list[np.ndarray]:
    """Sequence indices grouped into ``num_buckets`` runs of the length-sorted order."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [b for b in np.array_split(order, min(num_buckets, len(order))) if len(b)]


@register
class Bucketed(Strategy):
    name = "bucketed"
    summary = "sort by length, pad within 4 length buckets, standard path"
    num_buckets = 4

    def __call__(self, batch):
        lengths = batch.lengths_list
        pieces = [None] * batch.batch_size
        seqs = batch.to_list()
        for idx in bucket_indices(lengths, self.num_buckets):
            width = max(lengths[i] for i in idx)
            if width == 0:
                for i in idx:
                    pieces[i] = seqs[i]
                continue
            x = torch.nn.utils.rnn.pad_sequence([seqs[i] for i in idx], batch_first=True, padding_value=0.0)
            pos = torch.arange(width, device=batch.device)
            lens = torch.tensor([lengths[i] for i in idx], device=batch.device)
            mask = pos[None, :] >= lens[:, None]
            # Seeded noise in pads, as in `padded`: pads must not matter.
            noise = batch.pad_noise()[torch.as_tensor(idx, device=batch.device), :width]
            x = torch.where(mask[..., None], noise, x)
            with standard_path():
                out = self.encoder(x, src_key_padding_mask=mask)
            for row, i in enumerate(idx):
                pieces[i] = out[row, : lengths[i]]
        return torch.cat(pieces)
