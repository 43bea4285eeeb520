"""From a few timed batches to the whole epoch: stratified sample, cost model, interval.

A batch's time is modelled as a non-negative sum of what it does: a fixed cost, a cost per
sequence, per real token, per padded token, per unit of real attention work (sum of L_i^2)
and per unit of the padded shape's attention work (rows * width^2). Each strategy pays for
some of these and not others (padded: padded tokens and padded attention; packed: real
tokens and real attention; loop: a cost per sequence), and the fit finds which from the
timed batches. The sample is stratified by the batch's work so the fit sees the whole range,
and always holds the batches that are extreme in any feature, so the rest is interpolated,
never extrapolated. The interval is a bootstrap: refit on resampled timed batches and add
resampled residuals to every predicted batch.
"""

from __future__ import annotations

import numpy as np

FEATURES = ("batch", "sequences", "real_tokens", "padded_tokens", "real_attention", "padded_attention")
BOOTSTRAP = 300
LEVEL = 0.95


def features(epoch) -> np.ndarray:
    """``[batches, FEATURES]`` of an `Epoch`."""
    rows = []
    for b in epoch.batches:
        lens = b.lengths.astype(np.float64)
        rows.append((1.0, len(lens), lens.sum(), b.padded_tokens, float((lens**2).sum()),
                     b.rows * float(b.width) ** 2 if epoch.shape != "varlen" else float((lens**2).sum())))
    return np.asarray(rows, dtype=np.float64)


def sample_size(batches: int) -> int:
    """Batches to time by default: at least 8, about 2 * sqrt(batches), never more than there are."""
    return min(batches, max(8, int(round(2 * np.sqrt(batches)))))


def stratified_sample(x: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Indices of ``size`` batches: the extremes of every feature, then one per work stratum."""
    n = len(x)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    chosen = []
    for col in range(1, x.shape[1]):
        for i in (int(np.argmin(x[:, col])), int(np.argmax(x[:, col]))):
            if i not in chosen:
                chosen.append(i)
    chosen = chosen[: max(2, size // 2)]  # the rest of the sample goes to the strata
    scale = x.mean(axis=0)
    scale[scale == 0] = 1.0
    work = (x[:, 3] / scale[3]) + (x[:, 5] / scale[5])  # padded tokens and padded attention: shape
    order = [i for i in np.argsort(work, kind="stable") if i not in chosen]
    for stratum in np.array_split(np.asarray(order, dtype=np.int64), size - len(chosen)):
        if len(stratum):
            chosen.append(int(rng.choice(stratum)))
    return np.asarray(sorted(chosen), dtype=np.int64)


def fit(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Non-negative least squares by elimination: drop the most negative term and refit.

    Columns are scaled to unit mean so the terms compare; returns coefficients for unscaled x.
    """
    scale = np.abs(x).mean(axis=0)
    scale[scale == 0] = 1.0
    xs = x / scale
    active = [j for j in range(x.shape[1]) if np.ptp(xs[:, j]) > 0 or j == 0]
    coef = np.zeros(x.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(xs[:, active], t, rcond=None)
        if (sol >= 0).all():
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return coef / scale


def estimate(x: np.ndarray, measured: dict[int, float], *, seed: int = 0,
             bootstrap: int = BOOTSTRAP) -> tuple[float, float, float]:
    """(epoch seconds, low, high): measured batches as timed, the others predicted.

    With every batch measured there is nothing to predict: low = high = the measured sum.
    ``bootstrap=0``: the point estimate only (low and high are None).
    """
    idx = np.asarray(sorted(measured), dtype=np.int64)
    t = np.asarray([measured[i] for i in idx])
    rest = np.setdiff1d(np.arange(len(x)), idx)
    total_measured = float(t.sum())
    if not len(rest):
        return total_measured, total_measured, total_measured
    coef = fit(x[idx], t)
    point = total_measured + float(np.clip(x[rest] @ coef, 0, None).sum())
    if not bootstrap:
        return point, None, None
    rng = np.random.default_rng(seed)
    totals = np.empty(bootstrap)
    for b in range(bootstrap):
        pick = rng.integers(0, len(idx), len(idx))
        c = fit(x[idx[pick]], t[pick])
        residuals = t[pick] - x[idx[pick]] @ c
        pred = x[rest] @ c + rng.choice(residuals, len(rest))
        totals[b] = total_measured + float(np.clip(pred, 0, None).sum())
    low, high = np.quantile(totals, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return point, float(min(low, point)), float(max(high, point))
