import pytest
import torch

from padbench.batch import VarlenBatch
from padbench.errors import PadbenchError


def test_packed_layout_and_converters():
    b = VarlenBatch.from_lengths([3, 1, 4], 8, seed=0)
    assert b.values.shape == (8, 8)
    assert b.offsets.tolist() == [0, 3, 4, 8]
    assert b.lengths.tolist() == [3, 1, 4]
    assert b.padding_ratio == pytest.approx(1 - 8 / 12)
    x, mask = b.to_padded()
    assert x.shape == (3, 4, 8) and mask.dtype == torch.bool
    assert mask.tolist() == [[False] * 3 + [True], [False] + [True] * 3, [False] * 4]
    assert torch.equal(x[~mask], b.values)
    assert (x[mask].abs() > 0).all(), "pads hold noise, not zeros"
    assert torch.equal(b.unpad(x), b.values)
    assert [t.shape[0] for t in b.to_list()] == [3, 1, 4]
    nt = b.to_jagged()
    assert torch.equal(nt.values(), b.values)
    assert torch.equal(torch.cat(b.to_nested().unbind()), b.values)


def test_seeded_and_pad_noise_changes():
    a = VarlenBatch.from_lengths([2, 5], 4, seed=1)
    b = VarlenBatch.from_lengths([2, 5], 4, seed=1)
    assert torch.equal(a.to_padded()[0], b.to_padded()[0])
    c = a.with_pad_noise(seed=99, scale=100.0)
    xa, mask = a.to_padded()
    xc, _ = c.to_padded()
    assert torch.equal(xa[~mask], xc[~mask])
    assert not torch.equal(xa[mask], xc[mask])


def test_from_padded_roundtrip():
    b = VarlenBatch.from_lengths([2, 5, 1], 4, seed=2)
    x, mask = b.to_padded()
    back = VarlenBatch.from_padded(x, mask)
    assert torch.equal(back.values, b.values) and back.lengths_list == (2, 5, 1)


def test_from_padded_validates_mask():
    x = torch.randn(2, 3, 4)
    with pytest.raises(PadbenchError, match="must be bool"):
        VarlenBatch.from_padded(x, torch.zeros(2, 3))
    with pytest.raises(PadbenchError, match="does not match"):
        VarlenBatch.from_padded(x, torch.zeros(2, 4, dtype=torch.bool))
    misaligned = torch.tensor([[True, False, False], [False, False, True]])
    with pytest.raises(PadbenchError, match="row 0 is not left-aligned"):
        VarlenBatch.from_padded(x, misaligned)
    bad = x.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(PadbenchError, match="NaN"):
        VarlenBatch.from_padded(bad, torch.zeros(2, 3, dtype=torch.bool))


def test_from_lengths_validates():
    with pytest.raises(PadbenchError, match="zero sequence length"):
        VarlenBatch.from_lengths([3, 0], 4)
    with pytest.raises(PadbenchError, match="negative"):
        VarlenBatch.from_lengths([3, -1], 4)
    with pytest.raises(PadbenchError, match="empty batch"):
        VarlenBatch.from_lengths([], 4)
    with pytest.raises(PadbenchError, match="over max_len"):
        VarlenBatch.from_lengths([3, 9], 4, max_len=8)
    empty = VarlenBatch.from_lengths([3, 0, 2], 4, allow_empty=True)
    assert empty.offsets.tolist() == [0, 3, 3, 5]
