"""Whole epochs: batching policies over a dataset's lengths, and how long each epoch takes.

`policies` turns lengths into an epoch's batches (and their padding); `estimate` times a
stratified sample of them per strategy and predicts the rest with `costmodel`.
"""

from .estimate import EpochConfig, measure_epochs
from .policies import POLICIES, build_epoch, check_policies, strategies_for

__all__ = ["EpochConfig", "POLICIES", "build_epoch", "check_policies", "measure_epochs", "strategies_for"]
