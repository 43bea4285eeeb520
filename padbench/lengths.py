"""Seeded sequence-length distributions.

Every distribution draws from numpy's PCG64 generator, so a (name, batch_size, max_len, seed)
gives the same lengths on every machine. Each one can also be asked for by a target padding
ratio: the drawn shape is bent by a power transform until the batch's padding ratio
``1 - sum(lengths) / (B * max)`` is as close to the target as integer lengths allow.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import PadbenchError

DISTRIBUTIONS = ("constant", "uniform", "normal", "beta", "lognormal", "zipf", "bimodal")

# Default longest length per distribution when the caller gives none: long-tailed
# distributions get room for their tail.
DEFAULT_MAX_LEN = {
    "constant": 256,
    "uniform": 256,
    "normal": 256,
    "beta": 256,
    "lognormal": 512,
    "zipf": 512,
    "bimodal": 512,
}


def padding_ratio(lengths) -> float:
    """Share of a padded ``[B, max]`` batch that is padding."""
    lengths = np.asarray(lengths)
    if lengths.size == 0 or lengths.max() <= 0:
        return 0.0
    return float(1.0 - lengths.sum() / (lengths.size * lengths.max()))


def validate_lengths(lengths, max_len: int | None = None, *, allow_empty: bool = False) -> np.ndarray:
    """Return lengths as int64, or raise PadbenchError naming what is wrong."""
    arr = np.asarray(lengths)
    if arr.ndim != 1:
        raise PadbenchError(f"lengths must be a 1-D list of integers, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise PadbenchError("empty batch: lengths has no sequences")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise PadbenchError("lengths contain NaN or Inf")
        if not np.all(arr == np.round(arr)):
            raise PadbenchError("lengths must be integers, got fractional values")
    elif arr.dtype.kind not in "iu":
        raise PadbenchError(f"lengths must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise PadbenchError(f"negative sequence length {int(arr.min())} at index {int(np.argmin(arr))}")
    if not allow_empty and (arr == 0).any():
        raise PadbenchError(f"zero sequence length at index {int(np.argmin(arr))}")
    if allow_empty and arr.max() == 0:
        raise PadbenchError("every sequence in the batch is empty")
    if max_len is not None:
        if max_len < 1:
            raise PadbenchError(f"max_len must be >= 1, got {max_len}")
        if arr.max() > max_len:
            i = int(np.argmax(arr))
            raise PadbenchError(f"sequence length {int(arr[i])} at index {i} is over max_len {max_len}")
    return arr


def read_lengths_file(path: str | Path) -> np.ndarray:
    """Lengths from a text file (one integer per line) or a .npy array."""
    path = Path(path)
    if not path.is_file():
        raise PadbenchError(f"lengths file not found: {path}")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise PadbenchError(f"cannot read {path} as a .npy array of integers: {exc}") from None
        return validate_lengths(np.ravel(arr))
    values = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                values.append(int(text))
            except ValueError:
                raise PadbenchError(f"{path}:{lineno}: not an integer length: {text!r}") from None
    if not values:
        raise PadbenchError(f"{path} holds no lengths")
    return validate_lengths(values)


def _shape(name: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw n values in (0, 1]: the distribution's shape, scaled by max_len later."""
    if name == "constant":
        return np.ones(n)
    if name == "uniform":
        # 1/16 of max_len to max_len: 16..256 at max_len 256.
        return rng.uniform(1.0 / 16.0, 1.0, n)
    if name == "normal":
        return rng.normal(0.5, 1.0 / 6.0, n)
    if name == "beta":
        return rng.beta(2.0, 5.0, n)
    if name == "lognormal":
        # median max_len/8 with a long right tail (sigma 1.2): a batch of 32 typically
        # reaches ~0.9 max_len and is ~77% padding when padded to its longest sequence.
        return rng.lognormal(math.log(1.0 / 8.0), 1.2, n)
    if name == "zipf":
        return rng.zipf(1.5, n) / 32.0
    if name == "bimodal":
        short = rng.random(n) < 0.7
        return np.where(short, rng.normal(1.0 / 8.0, 1.0 / 32.0, n), rng.normal(0.75, 1.0 / 16.0, n))
    raise PadbenchError(f"unknown distribution {name!r}; choose one of {', '.join(DISTRIBUTIONS)} or file:PATH")


def _to_lengths(shape: np.ndarray, max_len: int) -> np.ndarray:
    return np.clip(np.ceil(np.clip(shape, 0.0, 1.0) * max_len), 1, max_len).astype(np.int64)


def _hit_ratio(shape: np.ndarray, max_len: int, target: float) -> np.ndarray:
    """Bend ``shape`` by ``u ** gamma`` (gamma found by bisection) to reach the target ratio."""
    u = np.clip(shape, 1.0 / max_len, 1.0)
    u = u / u.max()  # the longest sequence stays at max_len
    lo, hi = 0.0, 64.0
    best = _to_lengths(u**hi, max_len)
    if padding_ratio(best) < target:
        return best  # as padded as integer lengths of this shape allow
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if padding_ratio(_to_lengths(u**mid, max_len)) < target:
            lo = mid
        else:
            hi = mid
    a, b = _to_lengths(u**lo, max_len), _to_lengths(u**hi, max_len)
    return a if abs(padding_ratio(a) - target) <= abs(padding_ratio(b) - target) else b


# What a sweep runs when the user names no distribution: even, long-tailed, no padding.
DEFAULT_DISTS = ("uniform", "lognormal", "constant")
FILE_PREFIX = "file:"


def file_path(dist: str) -> str | None:
    """The path of a ``file:PATH`` distribution, None for a named one."""
    return dist[len(FILE_PREFIX):] if dist.startswith(FILE_PREFIX) else None


def check_distribution(dist: str) -> None:
    """Refuse an unknown distribution name, or a length file that cannot be read, with one line."""
    path = file_path(dist)
    if path is not None:
        read_lengths_file(path)
    elif dist not in DISTRIBUTIONS:
        raise PadbenchError(f"unknown distribution {dist!r}; choose from {', '.join(DISTRIBUTIONS)} or file:PATH")


def sample_lengths(
    dist: str,
    batch_size: int,
    max_len: int | None = None,
    seed: int = 0,
    *,
    target_padding: float | None = None,
) -> np.ndarray:
    """Draw ``batch_size`` lengths in ``[1, max_len]`` from ``dist`` (a name or ``file:PATH``).

    ``file:PATH`` samples with replacement from the user's own lengths (seeded).
    ``target_padding`` in [0, 1) asks for a batch with that padding ratio.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise PadbenchError(f"batch_size must be a positive integer, got {batch_size!r}")
    if target_padding is not None and not (0.0 <= target_padding < 1.0):
        raise PadbenchError(f"target padding ratio must be in [0, 1), got {target_padding}")
    rng = np.random.default_rng(seed)
    path = file_path(dist)
    if path is not None:
        pool = read_lengths_file(path)
        if max_len is not None:
            validate_lengths(pool, max_len)
        lengths = rng.choice(pool, size=batch_size, replace=True).astype(np.int64)
        if target_padding is not None:
            raise PadbenchError("a target padding ratio applies to named distributions, not to file: lengths")
        return lengths
    if dist not in DISTRIBUTIONS:
        raise PadbenchError(f"unknown distribution {dist!r}; choose one of {', '.join(DISTRIBUTIONS)} or file:PATH")
    max_len = DEFAULT_MAX_LEN[dist] if max_len is None else max_len
    if not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise PadbenchError(f"max_len must be a positive integer, got {max_len!r}")
    shape = _shape(dist, rng, batch_size)
    if target_padding is None:
        return _to_lengths(shape, max_len)
    if dist == "constant" and target_padding > 0:
        raise PadbenchError("constant lengths always have padding ratio 0; pick another distribution")
    return _hit_ratio(shape, max_len, target_padding)


def resolve_max_len(dist: str, max_len: int | None) -> int | None:
    """The max_len a case of ``dist`` runs with when the user gave ``max_len`` (maybe None)."""
    if max_len is not None:
        return max_len
    path = file_path(dist)
    if path is not None:
        return int(read_lengths_file(path).max())
    return DEFAULT_MAX_LEN.get(dist)
