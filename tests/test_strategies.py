"""Every strategy against the float64 per-sequence reference, forward and backward."""

import pytest
import torch

import padbench.strategies as strategies
from padbench import equivalence
from padbench.errors import PadbenchError, UnsupportedError
from padbench.model import EncoderSpec
from padbench.runner import Case, measure_case, prepare
from padbench.strategies.base import Strategy

SMALL = EncoderSpec(d_model=32, nhead=4, dim_feedforward=64, num_layers=2)

FWD_TOL, GRAD_TOL = 1e-4, 1e-3
DISTS = ["uniform", "lognormal", "bimodal", "constant"]
CHEAP = [n for n in strategies.names() if n != "flex"]  # flex compiles per shape: tested once below


def supported(name, mode):
    return strategies.strategy_class(name).unsupported_reason("cpu", mode) is None


def cases(mode, names):
    return [(n, d) for n in names for d in DISTS if supported(n, mode)]


def assert_equivalent(case):
    prepared = prepare(case)
    result = equivalence.check(prepared)
    assert result["max_rel_err"] < FWD_TOL, result
    if case.mode == "training":
        assert result["grad_rel_err"] < GRAD_TOL, result
    assert result["pad_invariant"], result
    assert result["nan_free"], result
    return prepared


@pytest.mark.parametrize("name, dist", cases("inference", CHEAP))
def test_inference_equivalence(name, dist):
    assert_equivalent(Case(name, dist, mode="inference", batch_size=6, max_len=24, spec=SMALL, seed=1))


@pytest.mark.parametrize("name, dist", cases("training", CHEAP))
def test_training_equivalence(name, dist):
    assert_equivalent(Case(name, dist, mode="training", batch_size=6, max_len=24, spec=SMALL, seed=2))


def test_output_is_packed_in_batch_order():
    p = prepare(Case("loop", "uniform", batch_size=5, max_len=20, spec=SMALL))
    ref = equivalence.reference(p.encoder, p.batch)
    for name in CHEAP:
        if not supported(name, "inference"):
            continue
        out = strategies.get(name, p.encoder)
        p.encoder.eval()
        with torch.no_grad():
            got = out(p.batch)
        assert got.shape == ref.shape
        assert equivalence.rel_err(got, ref)[1] < FWD_TOL, name


def test_flex_equivalence_inference():
    assert_equivalent(Case("flex", "lognormal", mode="inference", batch_size=5, max_len=40, spec=SMALL, seed=3))


def test_nested_fastpath_is_proven_taken():
    rec = measure_case(Case("nested_fastpath", "uniform", batch_size=4, max_len=16, spec=SMALL), min_run_time=0.05,
                       max_run_time=0.2, memory=False)
    assert rec["status"] == "ok" and rec["fastpath_taken"] is True


def test_nested_fastpath_fallback_is_reported_not_timed():
    spec = EncoderSpec(d_model=32, nhead=4, dim_feedforward=64, num_layers=1, norm_first=True)
    rec = measure_case(Case("nested_fastpath", "uniform", batch_size=4, max_len=16, spec=spec), memory=False)
    assert rec["fastpath_taken"] is False
    assert rec["status"] == "unsupported" and "not taken" in rec["message"]
    assert rec["time_s"] is None


def test_unsupported_combinations_raise_one_type():
    with pytest.raises(UnsupportedError, match="does not support training"):
        prepare(Case("nested_fastpath", "uniform", mode="training", spec=SMALL, max_len=16))
    with pytest.raises(UnsupportedError, match="does not run on cpu"):
        strategies.strategy_class("varlen_attn").check("cpu", "inference")
    with pytest.raises(PadbenchError, match="unknown strategy"):
        strategies.get("nope", None)


class IgnoresMask(Strategy):
    """A broken strategy: pads the batch and attends to the pads."""

    name = "test_ignores_mask"

    def __call__(self, batch):
        x, _ = batch.to_padded()
        return batch.unpad(self.encoder(x))


def test_checks_catch_a_leaking_strategy(monkeypatch):
    monkeypatch.setitem(strategies.base._REGISTRY, IgnoresMask.name, IgnoresMask)
    prepared = prepare(Case(IgnoresMask.name, "uniform", mode="training", batch_size=6, max_len=24, spec=SMALL))
    result = equivalence.check(prepared)
    assert result["max_rel_err"] > 1e-2
    assert result["grad_rel_err"] > 1e-2
    assert result["pad_invariant"] is False


@pytest.mark.parametrize("norm_first, activation", [(False, "gelu"), (True, "gelu"), (False, "relu"), (True, "relu")])
def test_inplace_dense_block_matches_reference_across_chunks(monkeypatch, norm_first, activation):
    """The no-grad dense path (chunked, in place) for both layer orders and activations, with
    chunks small enough that sequences straddle chunk boundaries."""
    from padbench import layers

    monkeypatch.setattr(layers, "CPU_CHUNK_TOKENS", 7)
    spec = EncoderSpec(d_model=32, nhead=4, dim_feedforward=64, num_layers=2, norm_first=norm_first,
                       activation=activation)
    for name in ("packed", "flex") if norm_first else ("packed",):
        assert_equivalent(Case(name, "bimodal", mode="inference", batch_size=5, max_len=30, spec=spec, seed=4))


@pytest.mark.parametrize("name", strategies.names())
def test_library_call_where_unsupported_raises_unsupported_error(name):
    """Called straight from the library, a strategy that cannot run here says why (never a raw torch error)."""
    from padbench.batch import VarlenBatch

    encoder = SMALL.build(0, "cpu")
    batch = VarlenBatch.from_lengths([3, 5], SMALL.d_model, seed=0)
    strategy = strategies.get(name, encoder)
    for mode in ("inference", "training"):
        reason = strategies.strategy_class(name).unsupported_reason("cpu", mode, torch.float32)
        if reason is None:
            continue
        with torch.set_grad_enabled(mode == "training"), pytest.raises(UnsupportedError) as exc:
            strategy(batch)
        assert str(exc.value) == reason


def test_varlen_attn_on_cpu_through_the_library_is_unsupported():
    from padbench.batch import VarlenBatch

    with torch.no_grad(), pytest.raises(UnsupportedError, match="cuda"):
        strategies.get("varlen_attn", SMALL.build(0, "cpu"))(VarlenBatch.from_lengths([4, 2], SMALL.d_model, seed=1))
