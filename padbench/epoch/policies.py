"""Batching policies: how a data loader turns a dataset's lengths into one epoch of batches.

Each policy is a pure, seeded function ``lengths -> list of index arrays`` that puts every
sequence in exactly one batch. What differs is the shape a batch is run in, and so what it
costs in padding:

- ``random``: shuffle, fixed batches of B, padded to each batch's longest (PyTorch's
  ``DataLoader(shuffle=True)`` with a padding collate such as ``DataCollatorWithPadding``).
- ``grouped``: Hugging Face Trainer's ``group_by_length`` (``LengthGroupedSampler``): random
  mega-batches of ``m·B`` sequences (its default ``m = min(n // 4B, 50)``, at least 1: 50, or
  fewer so a small dataset still has 4 mega-batches), each sorted by length and cut into
  batches of B; the batches are then shuffled (Hugging Face keeps them in order, longest batch
  first; the order does not change the epoch's cost).
- ``token_budget``: fairseq's ``max_tokens``: sequences sorted by length (ties broken at random),
  batches filled while ``count * longest <= N`` (padding included); batches shuffled.
- ``rows``: first-fit-decreasing packing of the whole file into rows of ``row_len`` (Krell et
  al. 2021); rows shuffled and grouped into batches of ``min(B, N // row_len)`` rows.
- ``varlen``: shuffle, then batches of up to N real tokens run as one packed stream: no padding.

Padded tokens follow each policy's own shape: ``B * longest`` for a padded batch, ``rows *
row_len`` for a rows batch (the rows `rowpacked` builds from the batch: first-fit-decreasing of
its sequences, which in every file tried needs no more rows than the batch was cut from), the
real tokens for varlen. A sequence longer than N gets a token-budget or varlen batch of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PadbenchError
from ..strategies.rowpacked import first_fit_decreasing

POLICIES = ("random", "grouped", "token_budget", "rows", "varlen")
MEGA_BATCH_FACTOR = 50  # Hugging Face's LengthGroupedSampler: mega-batches of up to 50 batches

# The batch shape each policy hands the model.
SHAPE = {"random": "padded", "grouped": "padded", "token_budget": "padded", "rows": "rows", "varlen": "varlen"}

# Strategies that run each shape. A padded batch can go to any strategy that takes a padded
# batch or unpads it itself (and an hf: model's own padded call): the padding is the loader's,
# whether compute is spent on it is the strategy's. Rows go only to `rowpacked`; a varlen
# stream only to strategies built on packed tokens.
RUNS = {
    "padded": ("padded", "bucketed", "nested_fastpath", "jagged", "loop", "packed", "hf_sdpa", "hf_eager"),
    "rows": ("rowpacked",),
    "varlen": ("packed", "flex", "varlen_attn", "hf_padfree"),
}

# How much of the order stays random from epoch to epoch.
SHUFFLED = {
    "random": "samples",  # every epoch a new random composition and order
    "grouped": "mega-batches",  # random mega-batches; inside one, composition follows length
    "token_budget": "batch order",  # composition fixed by one global sort; only batch order random
    "rows": "batch order",  # rows fixed by one global packing; rows and batch order random
    "varlen": "samples",
}


def check_policies(names) -> list[str]:
    chosen = list(POLICIES) if names in ("all", None) else [n.strip() for n in names.split(",") if n.strip()]
    for n in chosen:
        if n not in POLICIES:
            raise PadbenchError(f"unknown policy {n!r}; choose from {', '.join(POLICIES)} or all")
    if not chosen:
        raise PadbenchError("no policy given")
    return chosen


def strategies_for(policy: str, requested) -> list[str]:
    """The requested strategies that run ``policy``'s batch shape, in the requested order."""
    runs = RUNS[SHAPE[policy]]
    return [s for s in requested if s in runs]


# ---------------------------------------------------------------------------------- policies
def _chunks(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def _shuffled(batches: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    return [batches[i] for i in rng.permutation(len(batches))]


def _fill(order: np.ndarray, lengths: np.ndarray, max_tokens: int, padded: bool) -> list[np.ndarray]:
    """Consecutive batches of ``order`` holding at most ``max_tokens`` (padded: count * longest)."""
    batches, start, longest, real = [], 0, 0, 0
    for pos, i in enumerate(order):
        n = int(lengths[i])
        count = pos - start + 1
        cost = count * max(longest, n) if padded else real + n
        if pos > start and cost > max_tokens:
            batches.append(order[start:pos])
            start, longest, real = pos, 0, 0
        longest, real = max(longest, n), real + n
    if start < len(order):
        batches.append(order[start:])
    return batches


def random_batches(lengths, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    return _chunks(np.random.default_rng(seed).permutation(len(lengths)), batch_size)


def mega_batch_size(sequences: int, batch_size: int) -> int:
    """Hugging Face's default: 50 batches, or fewer so that there are 4 mega-batches; at least 1."""
    return max(1, min(sequences // (4 * batch_size), MEGA_BATCH_FACTOR)) * batch_size


def grouped_batches(lengths, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    batches = []
    for mega in _chunks(rng.permutation(len(lengths)), mega_batch_size(len(lengths), batch_size)):
        by_length = mega[np.argsort(-lengths[mega], kind="stable")]
        batches.extend(_chunks(by_length, batch_size))
    return _shuffled(batches, rng)


def _length_sorted(lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices by length, ties in random order (fairseq shuffles, then sorts stably)."""
    perm = rng.permutation(len(lengths))
    return perm[np.argsort(lengths[perm], kind="stable")]


def token_budget_batches(lengths, max_tokens: int, seed: int = 0) -> list[np.ndarray]:
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    return _shuffled(_fill(_length_sorted(lengths, rng), lengths, max_tokens, padded=True), rng)


def rows_per_batch(batch_size: int, max_tokens: int, row_len: int) -> int:
    return max(1, min(batch_size, max_tokens // row_len))


def row_batches(lengths, batch_size: int, max_tokens: int, row_len: int, seed: int = 0) -> list[np.ndarray]:
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(lengths))  # ties of equal length in random order
    rows = [perm[row] for row in first_fit_decreasing(lengths[perm], row_len)]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    k = rows_per_batch(batch_size, max_tokens, row_len)
    return [np.concatenate(rows[i : i + k]) for i in range(0, len(rows), k)]


def varlen_batches(lengths, max_tokens: int, seed: int = 0) -> list[np.ndarray]:
    lengths = np.asarray(lengths)
    return _fill(np.random.default_rng(seed).permutation(len(lengths)), lengths, max_tokens, padded=False)


# ---------------------------------------------------------------------------------- the epoch
@dataclass(frozen=True)
class EpochBatch:
    """One batch of an epoch and the work its shape implies."""

    indices: np.ndarray
    lengths: np.ndarray
    rows: int  # padded: sequences; rows: packed rows; varlen: 1
    width: int  # padded: the longest; rows: row_len; varlen: real tokens

    @property
    def real_tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def padded_tokens(self) -> int:
        return self.rows * self.width


def padded_shape(policy: str, lengths: np.ndarray, row_len: int) -> tuple[int, int]:
    """(rows, width) a batch of ``policy`` runs in."""
    shape = SHAPE[policy]
    if shape == "padded":
        return len(lengths), int(lengths.max())
    if shape == "rows":
        return len(first_fit_decreasing(lengths, row_len)), row_len
    return 1, int(lengths.sum())


@dataclass(frozen=True)
class Epoch:
    policy: str
    batches: list[EpochBatch]
    row_len: int

    @property
    def shape(self) -> str:
        return SHAPE[self.policy]

    @property
    def shuffled(self) -> str:
        return SHUFFLED[self.policy]

    @property
    def real_tokens(self) -> int:
        return sum(b.real_tokens for b in self.batches)

    @property
    def padded_tokens(self) -> int:
        return sum(b.padded_tokens for b in self.batches)

    @property
    def padding_fraction(self) -> float:
        padded = self.padded_tokens
        return 1.0 - self.real_tokens / padded if padded else 0.0


def build_epoch(policy: str, lengths, *, batch_size: int, max_tokens: int, row_len: int, seed: int = 0) -> Epoch:
    """The epoch ``policy`` makes of ``lengths`` (every sequence in exactly one batch)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if int(lengths.max()) > row_len:
        raise PadbenchError(f"sequence length {int(lengths.max())} is over the row length {row_len}")
    if policy == "random":
        index = random_batches(lengths, batch_size, seed)
    elif policy == "grouped":
        index = grouped_batches(lengths, batch_size, seed)
    elif policy == "token_budget":
        index = token_budget_batches(lengths, max_tokens, seed)
    elif policy == "rows":
        index = row_batches(lengths, batch_size, max_tokens, row_len, seed)
    elif policy == "varlen":
        index = varlen_batches(lengths, max_tokens, seed)
    else:
        raise PadbenchError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    batches = [EpochBatch(i, lengths[i], *padded_shape(policy, lengths[i], row_len)) for i in index]
    return Epoch(policy, batches, row_len)
