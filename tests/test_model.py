import pytest
import torch

from padbench.errors import PadbenchError
from padbench.layers import encoder_forward
from padbench.model import EncoderSpec


def test_build_is_seeded_and_layers_differ():
    spec = EncoderSpec(d_model=16, nhead=2, dim_feedforward=32, num_layers=2)
    a, b = spec.build(0), spec.build(0)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n
    l0, l1 = a.layers
    assert not torch.equal(l0.linear1.weight, l1.linear1.weight)
    assert l0.self_attn.in_proj_bias.abs().sum() > 0
    assert l0.self_attn.dropout == 0.0 and l0.self_attn.batch_first


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_functional_layers_match_module(norm_first, activation):
    spec = EncoderSpec(d_model=16, nhead=2, dim_feedforward=32, num_layers=2, norm_first=norm_first,
                       activation=activation)
    enc = spec.build(1).double()
    x = torch.randn(1, 7, 16, dtype=torch.float64)

    def attend(q, k, v):
        q, k, v = (t.unflatten(-1, (2, 8)).transpose(1, 2) for t in (q, k, v))
        return torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(-2)

    torch.backends.mha.set_fastpath_enabled(False)
    try:
        ref = enc(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    assert torch.allclose(encoder_forward(enc, x, attend), ref, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"d_model": 10, "nhead": 3}, "not divisible by nhead"),
        ({"d_model": 0}, "positive integer"),
        ({"activation": "tanh"}, "activation"),
        ({"dtype": "int8"}, "unsupported dtype"),
    ],
)
def test_spec_errors(kwargs, message):
    with pytest.raises(PadbenchError, match=message):
        EncoderSpec(**kwargs)
