"""`rowpacked` on its own: the row layout, and equivalence on random lengths it was not tuned on."""

import numpy as np
import pytest
import torch

from padbench import equivalence, strategies
from padbench.batch import VarlenBatch
from padbench.errors import PadbenchError
from padbench.model import EncoderSpec
from padbench.strategies.rowpacked import RowLayout, RowPacked, first_fit_decreasing

SMALL = EncoderSpec(d_model=32, nhead=4, dim_feedforward=64, num_layers=2)
FWD_TOL, GRAD_TOL = 1e-4, 1e-3


def test_registered_after_packed():
    names = strategies.names()
    assert names.index("rowpacked") == names.index("packed") + 1


@pytest.mark.parametrize("seed", range(5))
def test_first_fit_decreasing_places_every_sequence_once_within_rows(seed):
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, 60, size=int(rng.integers(1, 80)))
    row_len = int(lens.max()) + int(rng.integers(0, 20))
    rows = first_fit_decreasing(lens, row_len)
    assert sorted(i for row in rows for i in row) == list(range(len(lens)))
    assert all(lens[row].sum() <= row_len for row in rows)
    assert len(rows) >= int(np.ceil(lens.sum() / row_len))


def test_ffd_refuses_a_sequence_longer_than_the_row():
    with pytest.raises(PadbenchError, match="does not fit a row of 10"):
        first_fit_decreasing([3, 11], 10)


def test_layout_positions_restart_and_mask_is_block_diagonal():
    lens = [5, 3, 0, 4, 2]
    layout = RowLayout.build(lens, 8)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    for i, n in enumerate(lens):
        slots = layout.token_slot[offsets[i] : offsets[i] + n]
        assert (layout.sequence[slots] == i).all()
        assert list(layout.position[slots]) == list(range(n))
        assert len(set(slots // 8)) <= 1  # a sequence never straddles rows
    mask = layout.attention_mask("cpu")[:, 0].reshape(-1, 8, 8)
    seq = layout.sequence.reshape(-1, 8)
    for r in range(layout.num_rows):
        for a in range(8):
            for b in range(8):
                same = seq[r, a] == seq[r, b] and seq[r, a] >= 0
                assert bool(mask[r, a, b]) == (same or a == b)


def _check(encoder, batch, training: bool, row_len=None):
    strategy = RowPacked(encoder, row_len=row_len)

    def run(b):
        encoder.zero_grad(set_to_none=True)
        if training:
            encoder.train()
            out = strategy(b)
            (out * equivalence.loss_weights(b)).sum().backward()
            return out.detach(), {n: p.grad.clone() for n, p in encoder.named_parameters()}
        encoder.eval()
        with torch.no_grad():
            return strategy(b), None

    out, grads = run(batch)
    if training:
        ref, ref_grads = equivalence.reference(encoder, batch, grads=True)
        assert equivalence.grads_rel_err(grads, ref_grads)[0] < GRAD_TOL
    else:
        ref = equivalence.reference(encoder, batch)
    assert equivalence.rel_err(out, ref)[1] < FWD_TOL
    out2, grads2 = run(batch.with_pad_noise(seed=99, scale=100.0))
    assert equivalence.rel_err(out2, out)[1] <= equivalence.PAD_INVARIANCE_TOL
    if training:
        assert equivalence.grads_rel_err(grads2, grads)[0] <= equivalence.PAD_INVARIANCE_TOL
    out3, grads3 = run(equivalence.with_empty_sequence(batch))
    assert torch.isfinite(out3).all()
    assert all(torch.isfinite(g).all() for g in (grads3 or {}).values())


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_equivalent_on_random_lengths(training, seed):
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, 40, size=int(rng.integers(2, 12)))
    encoder = SMALL.build(seed, "cpu")
    batch = VarlenBatch.from_lengths(lens, SMALL.d_model, seed=seed)
    _check(encoder, batch, training)


@pytest.mark.parametrize("training", [False, True])
def test_equivalent_with_a_fixed_row_length(training):
    encoder = SMALL.build(5, "cpu")
    batch = VarlenBatch.from_lengths([7, 30, 2, 19, 11, 1], SMALL.d_model, seed=5)
    _check(encoder, batch, training, row_len=48)


def test_empty_sequence_is_finite_and_other_outputs_unchanged():
    encoder = SMALL.build(3, "cpu").eval()
    batch = VarlenBatch.from_lengths([0, 9, 4, 0, 13], SMALL.d_model, seed=3, allow_empty=True)
    with torch.no_grad():
        out = RowPacked(encoder)(batch)
    assert out.shape == (26, SMALL.d_model) and torch.isfinite(out).all()
    assert equivalence.rel_err(out, equivalence.reference(encoder, batch))[1] < FWD_TOL


@pytest.mark.cuda
@pytest.mark.parametrize("training", [False, True])
def test_equivalent_on_cuda(training):
    encoder = SMALL.build(7, "cuda")
    batch = VarlenBatch.from_lengths([17, 3, 25, 8, 1, 30], SMALL.d_model, seed=7, device="cuda")
    _check(encoder, batch, training)
