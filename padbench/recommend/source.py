"""The user's lengths: where they come from, what a batch of them looks like, which batches to measure.

`resolve_lengths` validates ``--lengths FILE`` or ``--dist NAME`` and summarizes what batches
drawn from them look like; `pick_seeds` chooses the seeds of the batches `measure` times (the
same seeds `padbench.runner.Case` draws with, so a draw is reproducible with ``padbench run``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import PadbenchError
from ..lengths import (
    DISTRIBUTIONS,
    FILE_PREFIX,
    file_path,
    padding_ratio,
    read_lengths_file,
    sample_lengths,
    validate_lengths,
)
from ..measure import useful_flops
from ..runner import lengths_for

# Batches a default run measures.
DRAWS = 3
# Draws are picked among this many seeded batches (see `pick_seeds`).
SEED_POOL = 64
# Draws used to summarize a length source (expected padding ratio of a batch of B).
SUMMARY_DRAWS = 256


@dataclass
class LengthSource:
    """The user's lengths: a padbench distribution string plus a summary of what it yields."""

    distribution: str  # "file:PATH" or a named distribution
    label: str
    batch_size: int
    max_len: int | None
    summary: dict = field(default_factory=dict)


def _file_batches(path: str, batch_size: int, seeds) -> dict[int, np.ndarray]:
    """``{seed: batch}`` drawn from a lengths file as `sample_lengths` draws them, reading the file once."""
    pool = read_lengths_file(path)
    return {sd: np.random.default_rng(sd).choice(pool, size=batch_size, replace=True) for sd in seeds}


def _draw_pool(distribution: str, batch_size: int, max_len: int | None, seed: int, draws: int) -> list[np.ndarray]:
    """``draws`` batches of ``batch_size`` lengths as the measurement would draw them (other seeds)."""
    seeds = range(10_000 + seed, 10_000 + seed + draws)
    path = file_path(distribution)
    if path is not None:
        return list(_file_batches(path, batch_size, seeds).values())
    return [sample_lengths(distribution, batch_size, max_len, sd) for sd in seeds]


def features(batches) -> dict:
    """Padding ratio, mean length, expected batch max and coefficient of variation of batches."""
    allv = np.concatenate([np.asarray(b, dtype=np.float64) for b in batches])
    mean = float(allv.mean())
    return {
        "padding_ratio": float(np.mean([padding_ratio(b) for b in batches])),
        "mean": mean,
        "batch_max": float(np.mean([np.max(b) for b in batches])),
        "cv": float(allv.std() / mean) if mean > 0 else 0.0,
    }


def resolve_lengths(lengths_file: str | None, dist: str | None, batch_size: int, max_len: int | None,
                    seed: int = 0) -> LengthSource:
    """Validate the user's lengths and summarize them; raises PadbenchError on bad input."""
    if lengths_file and dist:
        raise PadbenchError("give either --lengths FILE or --dist NAME, not both")
    if not lengths_file and not dist:
        raise PadbenchError("no lengths: give your lengths with --lengths FILE (one integer per line, or .npy) "
                            f"or a named distribution with --dist NAME ({', '.join(DISTRIBUTIONS)})")
    if dist and file_path(dist) is not None:
        return resolve_lengths(file_path(dist), None, batch_size, max_len, seed)
    if lengths_file:
        pool = read_lengths_file(lengths_file)
        if max_len is not None:
            validate_lengths(pool, max_len)
        source = LengthSource(f"{FILE_PREFIX}{lengths_file}", lengths_file, batch_size, max_len)
        summary = {"source": source.distribution, "count": int(pool.size), "mean": float(pool.mean()),
                   "max": int(pool.max()), "std": float(pool.std())}
    else:
        if dist not in DISTRIBUTIONS:
            raise PadbenchError(f"unknown distribution {dist!r}; choose from {', '.join(DISTRIBUTIONS)} "
                                "(or give your own lengths with --lengths FILE)")
        source = LengthSource(dist, dist, batch_size, max_len)
        summary = {"source": dist}
    batches = _draw_pool(source.distribution, batch_size, max_len, seed, SUMMARY_DRAWS)
    feats = features(batches)
    if not lengths_file:
        allv = np.concatenate(batches)
        summary.update(count=int(allv.size), mean=float(allv.mean()), max=int(allv.max()), std=float(allv.std()))
    summary.update(padding_ratio=feats["padding_ratio"], batch_size=batch_size, expected_batch_max=feats["batch_max"],
                   cv=feats["cv"])
    source.summary = summary
    return source


def pick_seeds(source: LengthSource, spec, mode: str, seed: int, draws: int, pool: int = SEED_POOL) -> list[int]:
    """Seeds of ``draws`` batches that span the typical batches of ``source``, the median one first.

    Of ``pool`` seeded draws (seeds ``seed`` .. ``seed + pool - 1``, as `padbench.runner.Case`
    draws them), the ones at the quantiles ``(k + 1/2) / draws`` of the work ratio padded/real
    (`padbench.measure.useful_flops` of the padded batch over that of its real tokens: padding and
    the attention's quadratic term in one number) are measured. A stratified sample: with a long
    tail of lengths, a batch's max, and with it padded's cost, varies a lot from draw to draw.
    """
    seeds = list(range(seed, seed + max(pool, draws)))

    def case_lengths(sd):
        return lengths_for(source.distribution, source.batch_size, source.max_len, sd, None)

    path = file_path(source.distribution)
    batches = _file_batches(path, source.batch_size, seeds) if path is not None else {}
    # the file read once (a large file takes a while to parse), as long as it draws what a Case draws
    if not batches or any(tuple(int(n) for n in batches[sd]) != case_lengths(sd) for sd in seeds[:2]):
        batches = {sd: case_lengths(sd) for sd in seeds}

    def ratio(sd):
        b = np.asarray(batches[sd])
        return useful_flops([int(b.max())] * len(b), spec, mode) / useful_flops(b, spec, mode)

    ranked = sorted(seeds, key=lambda sd: (ratio(sd), sd))
    n = len(ranked)
    qs = [(k + 0.5) / draws for k in range(draws)]
    picked = [ranked[min(n - 1, int(round(q * n - 0.5)))] for q in sorted(qs, key=lambda q: abs(q - 0.5))]
    return list(dict.fromkeys(picked))


def batch_info(source: LengthSource, seed: int) -> dict:
    """Seed, padding ratio, longest length and real tokens of the batch ``seed`` draws."""
    lens = lengths_for(source.distribution, source.batch_size, source.max_len, seed, None)
    return {"seed": seed, "padding_ratio": padding_ratio(lens), "max": max(lens), "tokens": sum(lens)}
