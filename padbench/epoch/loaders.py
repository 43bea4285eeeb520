"""The data-loader side of each batching policy, in plain PyTorch (numpy for the shuffles).

`padbench recommend --epoch` prints this code as the loader half of its advice (`loader_snippet`),
so every sampler and collate here is written to be copied: it imports nothing from padbench and
each one's source, with the helpers `SNIPPET_PARTS` lists, runs on its own. Given a ``dataset``
whose item ``i`` is a tensor of ``lengths[i]`` tokens (``[L_i]`` token ids or ``[L_i, d]``
features), ``DataLoader(dataset, batch_sampler=batch_sampler(policy, ...),
collate_fn=collate_fn(policy, ...))`` yields the batches of `padbench.epoch.policies` for the same
lengths and seed, index for index, in its first epoch (``set_epoch(k)`` reseeds the next ones).
``random`` is the stock ``DataLoader(shuffle=True)``: its batches are torch's draw, the same kind
of batch, not the same draw.

What each collate yields is what the policy hands the model:

- ``pad_collate`` (random, grouped, token_budget): ``x [B, L, ...]`` padded to the batch's
  longest and a bool ``mask [B, L]``, True = pad;
- ``RowCollate`` (rows): the batch packed first-fit-decreasing into rows of ``row_len``:
  ``x [R, row_len, ...]``, ``segment [R, row_len]`` (which sequence of the batch holds a slot,
  -1 for a free one) and ``position [R, row_len]`` (restarting at every sequence);
- ``varlen_collate`` (varlen): the real tokens packed ``[T, ...]`` and ``cu_seqlens [n + 1]``
  (int32 offsets, as FlashAttention's varlen kernels take them).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import BatchSampler, RandomSampler, Sampler


# ------------------------------------------------------------------------------------ collates
def pad_collate(items):
    """Pad a batch to its longest sequence: (x [B, L, ...], bool mask [B, L], True = pad)."""
    lengths = torch.tensor([len(t) for t in items])
    x = torch.nn.utils.rnn.pad_sequence(items, batch_first=True)
    mask = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
    return x, mask


def varlen_collate(items):
    """Pack a batch's real tokens: (tokens [T, ...], cu_seqlens int32 [n + 1]), no padding."""
    lengths = torch.tensor([len(t) for t in items])
    cu_seqlens = torch.zeros(len(items) + 1, dtype=torch.int32)
    cu_seqlens[1:] = torch.cumsum(lengths, 0)
    return torch.cat(items), cu_seqlens


def first_fit_decreasing(lengths, row_len):
    """Rows of sequence indices: longest first, each into the first row it still fits."""
    rows, room = [], []
    for i in np.argsort(-np.asarray(lengths), kind="stable"):
        n = int(lengths[i])
        r = next((r for r in range(len(rows)) if room[r] >= n), None)
        if r is None:
            rows.append([])
            room.append(row_len)
            r = len(rows) - 1
        rows[r].append(int(i))
        room[r] -= n
    return rows


class RowCollate:
    """Pack a batch first-fit-decreasing into rows of ``row_len``: (x [R, row_len, ...],
    segment [R, row_len]: the batch's sequence in each slot, -1 if free, position [R, row_len])."""

    def __init__(self, row_len):
        self.row_len = row_len

    def __call__(self, items):
        rows = first_fit_decreasing([len(t) for t in items], self.row_len)
        x = items[0].new_zeros((len(rows), self.row_len, *items[0].shape[1:]))
        segment = torch.full((len(rows), self.row_len), -1, dtype=torch.long)
        position = torch.zeros((len(rows), self.row_len), dtype=torch.long)
        for r, row in enumerate(rows):
            start = 0
            for i in row:
                n = len(items[i])
                x[r, start : start + n] = items[i]
                segment[r, start : start + n] = i
                position[r, start : start + n] = torch.arange(n)
                start += n
        return x, segment, position


# ------------------------------------------------------------------------------- batch samplers
def fill_batches(order, lengths, max_tokens, padded):
    """Cut ``order`` into consecutive batches of at most ``max_tokens`` tokens: count x longest
    (``padded``) or the real tokens; a sequence longer than that is a batch of its own."""
    batches, batch, longest, real = [], [], 0, 0
    for i in order:
        n = int(lengths[i])
        cost = (len(batch) + 1) * max(longest, n) if padded else real + n
        if batch and cost > max_tokens:
            batches.append(batch)
            batch, longest, real = [], 0, 0
        batch.append(int(i))
        longest, real = max(longest, n), real + n
    if batch:
        batches.append(batch)
    return batches


class EpochBatchSampler(Sampler):
    """A batch sampler that draws a new epoch from ``seed + epoch`` (call ``set_epoch`` per epoch)."""

    def __init__(self, lengths, seed=0):
        self.lengths = np.asarray(lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def batches(self, rng):
        raise NotImplementedError

    def __iter__(self):
        yield from self.batches(np.random.default_rng(self.seed + self.epoch))

    def __len__(self):
        return len(self.batches(np.random.default_rng(self.seed + self.epoch)))


class LengthGroupedBatchSampler(EpochBatchSampler):
    """Hugging Face's ``group_by_length``: random mega-batches of ``m x batch_size`` (m = 50, or
    fewer so there are 4 of them), sorted by length inside and cut into batches; batches shuffled."""

    def __init__(self, lengths, batch_size, seed=0):
        super().__init__(lengths, seed)
        self.batch_size = batch_size

    def batches(self, rng):
        n, b = len(self.lengths), self.batch_size
        mega = max(1, min(n // (4 * b), 50)) * b
        perm = rng.permutation(n)
        batches = []
        for start in range(0, n, mega):
            group = perm[start : start + mega]
            group = group[np.argsort(-self.lengths[group], kind="stable")]  # longest first
            batches += [group[i : i + b].tolist() for i in range(0, len(group), b)]
        return [batches[i] for i in rng.permutation(len(batches))]


class TokenBudgetBatchSampler(EpochBatchSampler):
    """fairseq's ``--max-tokens``: sequences sorted by length (ties at random), batches of at most
    ``max_tokens`` tokens padding included (count x longest); batches shuffled."""

    def __init__(self, lengths, max_tokens, seed=0):
        super().__init__(lengths, seed)
        self.max_tokens = max_tokens

    def batches(self, rng):
        perm = rng.permutation(len(self.lengths))
        order = perm[np.argsort(self.lengths[perm], kind="stable")]
        batches = fill_batches(order, self.lengths, self.max_tokens, padded=True)
        return [batches[i] for i in rng.permutation(len(batches))]


class RowPackingBatchSampler(EpochBatchSampler):
    """Krell et al.'s packing: the whole dataset first-fit-decreasing into rows of ``row_len``,
    rows shuffled, ``min(batch_size, max_tokens // row_len)`` rows (at least 1) per batch."""

    def __init__(self, lengths, batch_size, max_tokens, row_len, seed=0):
        super().__init__(lengths, seed)
        self.rows_per_batch = max(1, min(batch_size, max_tokens // row_len))
        self.row_len = row_len

    def batches(self, rng):
        perm = rng.permutation(len(self.lengths))  # equal lengths in random order
        rows = [[int(perm[i]) for i in row] for row in first_fit_decreasing(self.lengths[perm], self.row_len)]
        rows = [rows[i] for i in rng.permutation(len(rows))]
        k = self.rows_per_batch
        return [sum(rows[i : i + k], []) for i in range(0, len(rows), k)]


class VarlenBatchSampler(EpochBatchSampler):
    """Shuffle, then batches of up to ``max_tokens`` real tokens (run as one packed stream)."""

    def __init__(self, lengths, max_tokens, seed=0):
        super().__init__(lengths, seed)
        self.max_tokens = max_tokens

    def batches(self, rng):
        return fill_batches(rng.permutation(len(self.lengths)), self.lengths, self.max_tokens, padded=False)


# ------------------------------------------------------------------------------------- per policy
def batch_sampler(policy, lengths, batch_size, max_tokens, row_len, seed=0):
    """The batch sampler of ``policy`` (``random``: torch's shuffled ``BatchSampler``)."""
    if policy == "random":
        generator = torch.Generator().manual_seed(seed)
        return BatchSampler(RandomSampler(range(len(lengths)), generator=generator), batch_size, drop_last=False)
    if policy == "grouped":
        return LengthGroupedBatchSampler(lengths, batch_size, seed)
    if policy == "token_budget":
        return TokenBudgetBatchSampler(lengths, max_tokens, seed)
    if policy == "rows":
        return RowPackingBatchSampler(lengths, batch_size, max_tokens, row_len, seed)
    if policy == "varlen":
        return VarlenBatchSampler(lengths, max_tokens, seed)
    raise ValueError(f"unknown policy {policy!r}")


def collate_fn(policy, row_len=None):
    """What turns ``policy``'s batch of items into the model's input (module docstring)."""
    if policy == "rows":
        return RowCollate(row_len)
    return varlen_collate if policy == "varlen" else pad_collate


# ------------------------------------------------------------------------------------ snippets
# The code a policy's snippet shows, in order: each part's source runs with the ones before it.
SNIPPET_PARTS = {
    "random": (pad_collate,),
    "grouped": (pad_collate, EpochBatchSampler, LengthGroupedBatchSampler),
    "token_budget": (pad_collate, fill_batches, EpochBatchSampler, TokenBudgetBatchSampler),
    "rows": (first_fit_decreasing, RowCollate, EpochBatchSampler, RowPackingBatchSampler),
    "varlen": (varlen_collate, fill_batches, EpochBatchSampler, VarlenBatchSampler),
}

IMPORTS = "import numpy as np\nimport torch\nfrom torch.utils.data import DataLoader, Sampler"

USAGE = {
    "random": "loader = DataLoader(dataset, batch_size={batch_size}, shuffle=True, collate_fn=pad_collate)\n",
    "grouped": ("sampler = LengthGroupedBatchSampler(lengths, batch_size={batch_size}, seed={seed})\n"
                "loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=pad_collate)\n"),
    "token_budget": ("sampler = TokenBudgetBatchSampler(lengths, max_tokens={max_tokens}, seed={seed})\n"
                     "loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=pad_collate)\n"),
    "rows": ("sampler = RowPackingBatchSampler(lengths, batch_size={batch_size}, max_tokens={max_tokens}, "
             "row_len={row_len}, seed={seed})\n"
             "loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=RowCollate({row_len}))\n"),
    "varlen": ("sampler = VarlenBatchSampler(lengths, max_tokens={max_tokens}, seed={seed})\n"
               "loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=varlen_collate)\n"),
}
# What a batch of the loader is, per policy: (names, comment).
PADDED_BATCH = ("x, mask", "x [B, L, ...] padded, mask [B, L] bool, True = pad")
BATCH = {
    "random": PADDED_BATCH,
    "grouped": PADDED_BATCH,
    "token_budget": PADDED_BATCH,
    "rows": ("x, segment, position", "x [R, row_len, ...]; segment: the sequence in each slot, -1 = free"),
    "varlen": ("tokens, cu_seqlens", "tokens [T, ...] packed, cu_seqlens [n + 1] int32"),
}


def loader_snippet(policy, *, batch_size, max_tokens, row_len, seed=0):
    """Runnable code for ``policy``'s loader, given ``dataset``, ``lengths`` and ``num_epochs``:
    the source of its `SNIPPET_PARTS`, the loader, and the epoch loop (epoch 0 makes padbench's batches)."""
    import inspect

    parts = [IMPORTS] + [inspect.getsource(obj) for obj in SNIPPET_PARTS[policy]]
    usage = USAGE[policy].format(batch_size=batch_size, max_tokens=max_tokens, row_len=row_len, seed=seed)
    loop = "for epoch in range(num_epochs):\n"
    if policy != "random":
        loop += "    sampler.set_epoch(epoch)  # a new shuffle every epoch\n"
    names, what = BATCH[policy]
    loop += f"    for {names} in loader:  # {what}\n        ...\n"
    return "\n\n\n".join(p.strip("\n") for p in parts) + "\n\n\n" + usage + loop
