"""The inference routes of `padbench.layers` (C++ dense layers, in-place torch ops) against autograd's."""

import pytest
import torch
from torch import nn

from padbench import layers
from padbench.environment import environment
from padbench.kernels import cpu_extension

ROUTES = {
    "cpp": lambda layer, x: True,
    "torch_inplace": lambda layer, x: False,
}


def _needs_cpp(route):
    if route == "cpp" and not cpu_extension.load()[0]:
        pytest.skip(cpu_extension.load()[1])


def _encoder(norm_first, activation, bias, dtype, seed=0):
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(32, 4, 96, dropout=0.0, activation=activation, batch_first=True,
                                       norm_first=norm_first, bias=bias)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    with torch.no_grad():
        for p in enc.parameters():  # every parameter non-trivial, layers different
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.5) + (0.2 if p.dim() == 1 else 0.0))
    for layer in enc.layers:  # distinct epsilons, large enough to matter: a mixed-up norm shows
        layer.norm1.eps, layer.norm2.eps = 0.5, 0.05
    return enc.to(dtype)


def _attend(q, k, v):
    """Any token-wise mixing will do: these tests are about the dense layers around it."""
    return v * torch.sigmoid(q) + k.roll(1, dims=0)


def _route_output(route, monkeypatch, enc, x):
    monkeypatch.setattr(layers, "_use_cpp",
                        lambda layer, t: ROUTES[route](layer, t) and layers._gelu_flag(layer) is not None)
    with torch.no_grad():
        return layers.encoder_forward(enc, x, _attend)


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("tokens", [1, 63, 64, 65, 300])
def test_inference_routes_match_autograd_float64(route, norm_first, activation, bias, tokens, monkeypatch):
    _needs_cpp(route)
    enc = _encoder(norm_first, activation, bias, torch.float64)
    x = torch.randn(tokens, 32, dtype=torch.float64)
    ref = layers.encoder_forward(enc, x, _attend).detach()  # grad enabled: the plain autograd route
    out = _route_output(route, monkeypatch, enc, x)
    torch.testing.assert_close(out, ref, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("norm_first", [False, True])
def test_inference_routes_float32_close_to_float64(route, norm_first, monkeypatch):
    _needs_cpp(route)
    enc = _encoder(norm_first, "gelu", True, torch.float64)
    x = torch.randn(777, 32, dtype=torch.float64) * 3
    ref = layers.encoder_forward(enc, x, _attend).detach()
    out = _route_output(route, monkeypatch, enc.float(), x.float())
    assert out.dtype == torch.float32
    assert (out.double() - ref).abs().max().item() < 2e-5


def test_cpp_route_is_taken_for_cpu_float_and_not_for_other_cases():
    _needs_cpp("cpp")
    relu, gelu, tanh = (_encoder(False, act, True, torch.float32).layers[0] for act in ("relu", "gelu", "gelu"))
    tanh.activation = nn.GELU(approximate="tanh")
    x = torch.zeros(4, 32)
    assert layers._use_cpp(relu, x) and layers._use_cpp(gelu, x)
    assert not layers._use_cpp(tanh, x)  # no C++ form: the torch route runs it
    assert not layers._use_cpp(gelu, x.bfloat16())


def test_tanh_gelu_takes_torch_route_and_matches_autograd():
    enc = _encoder(False, "gelu", True, torch.float64)
    for layer in enc.layers:
        layer.activation = nn.GELU(approximate="tanh")
    x = torch.randn(50, 32, dtype=torch.float64)
    ref = layers.encoder_forward(enc, x, _attend).detach()
    with torch.no_grad():
        torch.testing.assert_close(layers.encoder_forward(enc, x, _attend), ref, rtol=1e-11, atol=1e-11)


def test_cpp_ops_reject_mismatched_shapes():
    _needs_cpp("cpp")
    x = torch.randn(10, 32)
    with pytest.raises(RuntimeError, match=r"weight must be \[48, 32\]"):
        torch.ops.padbench.linear(x, torch.randn(48, 31), None)
    with pytest.raises(RuntimeError, match=r"bias must be \[48\]"):
        torch.ops.padbench.linear(x, torch.randn(48, 32), torch.randn(47))
    layer = _encoder(False, "gelu", True, torch.float32).layers[0]
    mha, n1, n2 = layer.self_attn, layer.norm1, layer.norm2
    with pytest.raises(RuntimeError, match="attn must be"):
        torch.ops.padbench.dense_block(x, torch.randn(9, 32), mha.out_proj.weight, mha.out_proj.bias,
                                       layer.linear1.weight, layer.linear1.bias, layer.linear2.weight,
                                       layer.linear2.bias, n1.weight, n1.bias, n1.eps, n2.weight, n2.bias, n2.eps,
                                       False, True)


def test_environment_records_dense_layers_route():
    rec = environment("cpu")["cpu_dense_layers"]
    assert rec == layers.cpu_dense_layers()
    ok, _ = cpu_extension.load()
    assert rec.startswith("padbench C++ dense layers") if ok else rec.startswith("PyTorch ops")
