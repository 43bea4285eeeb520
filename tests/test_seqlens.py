"""The lengths-derived facts `VarlenBatch` and `TokenBatch` share (`padbench.seqlens.SeqLens`)."""

import pytest
import torch

from padbench.batch import VarlenBatch
from padbench.seqlens import SeqLens
from padbench.tokens import TokenBatch

LENGTHS = [3, 1, 4]


def _batches():
    hidden = VarlenBatch.from_lengths(LENGTHS, 8, seed=0)
    tokens = TokenBatch.from_lengths(LENGTHS, vocab_size=50, d_model=8, seed=0, avoid_id=0)
    return hidden, tokens


@pytest.mark.parametrize("which", ["hidden", "tokens"])
def test_facts_match_the_lengths(which):
    b = dict(zip(["hidden", "tokens"], _batches()))[which]
    assert isinstance(b, SeqLens)
    assert b.lengths.tolist() == LENGTHS and b.lengths.dtype == torch.int64
    assert b.lengths.device == b.device == b.offsets.device
    assert b.lengths_list == tuple(LENGTHS)
    assert b.batch_size == 3 and b.max_len == 4 and b.num_tokens == 8
    assert isinstance(b.batch_size, int) and isinstance(b.max_len, int) and isinstance(b.num_tokens, int)
    assert b.padding_ratio == pytest.approx(1 - 8 / 12)
    mask = b.key_padding_mask()
    assert mask.dtype == torch.bool and mask.device == b.device
    assert mask.tolist() == [[False] * 3 + [True], [False] + [True] * 3, [False] * 4]
    assert b.key_padding_mask() is mask, "cached"
    pos = b.positions()
    assert pos.dtype == torch.int64 and pos.tolist() == [0, 1, 2, 0, 0, 1, 2, 3]
    packed = b._packed
    assert [t.shape[0] for t in b.to_list()] == LENGTHS
    assert torch.equal(torch.cat(b.to_list()), packed)
    padded = torch.zeros((3, 4, *packed.shape[1:]), dtype=packed.dtype)
    padded[~mask] = packed
    assert torch.equal(b.unpad(padded), packed)


def test_both_batches_state_the_same_facts():
    hidden, tokens = _batches()
    for name in ("lengths_list", "batch_size", "max_len", "num_tokens", "padding_ratio", "device"):
        assert getattr(hidden, name) == getattr(tokens, name), name
    for name in ("lengths", "key_padding_mask", "positions"):
        h, t = getattr(hidden, name), getattr(tokens, name)
        h, t = (h() if callable(h) else h), (t() if callable(t) else t)
        assert torch.equal(h, t) and h.dtype == t.dtype, name
    embedded = tokens.embedded(hidden.values)
    assert torch.equal(embedded.key_padding_mask(), tokens.key_padding_mask())
    assert embedded.num_tokens == tokens.num_tokens and embedded.d_model == 8


def test_class_specific_facts_are_kept():
    hidden, tokens = _batches()
    assert hidden.d_model == 8 and hidden.dtype == torch.float32
    assert tokens.d_model == 8 and tokens.dtype == torch.float32
    assert tokens.attention_mask().tolist() == (~tokens.key_padding_mask()).long().tolist()
    assert [t.dtype for t in tokens.to_list()] == [torch.int64] * 3
    assert not (tokens.ids == 0).any(), "avoid_id never among the real ids"


def test_empty_sequences():
    b = TokenBatch.from_lengths([0, 2], vocab_size=10, d_model=4, allow_empty=True)
    assert b.max_len == 2 and b.num_tokens == 2 and b.positions().tolist() == [0, 1]
    assert b.key_padding_mask().tolist() == [[True, True], [False, False]]
    h = VarlenBatch.from_lengths([0, 2], 4, allow_empty=True)
    assert [t.shape[0] for t in h.to_list()] == [0, 2] and h.positions().tolist() == [0, 1]
