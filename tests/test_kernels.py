"""padbench.kernels.varlen_attention: numerics against a float64 reference, gradients, errors.

The Triton backend runs on CPU only under the Triton interpreter, and triton's `@jit` picks
compiled-vs-interpreted when the kernels module is imported. So the interpreter checks run in a
subprocess with TRITON_INTERPRET=1 in its environment (robust however the suite was started and
whatever was imported before); `_interpreter_checks` below is the code that runs there, and each
check is reported by its own test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from padbench.environment import environment
from padbench.errors import PadbenchError, UnsupportedError
from padbench.kernels import (
    backend_available,
    cpu_extension,
    cpu_implementation,
    reference_varlen_attention,
    varlen_attention,
)
from padbench.kernels.cpu_attention import plan_groups, runs_from_offsets
from padbench.kernels.varlen_attention import flash_per_length

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent


# --------------------------------------------------------------------------- helpers

def make_inputs(lengths, nhead=2, head_dim=16, dtype=torch.float32, seed=0, offsets_dtype=torch.int64,
                fused=False, device="cpu"):
    """q, k, v [T, H, D] and offsets; `fused` gives non-contiguous views of one [T, 3, H, D] tensor."""
    g = torch.Generator().manual_seed(seed)
    T = sum(lengths)
    offsets = torch.tensor([0] + list(torch.tensor(lengths, dtype=torch.int64).cumsum(0).tolist()),
                           dtype=offsets_dtype, device=device)
    if fused:
        qkv = torch.randn(T, 3, nhead, head_dim, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
        q, k, v = qkv.unbind(1)  # strided views of one buffer, as a fused in-projection gives
    else:
        q, k, v = (torch.randn(T, nhead, head_dim, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
                   for _ in range(3))
    return q, k, v, offsets


def fwd_bwd(fn, q, k, v, offsets, grad_seed=1, fused=False):
    """Run fn forward and backward with a fixed random upstream gradient; returns (out, dq, dk, dv).

    fused=True feeds fn non-contiguous views of one [T, 3, H, D] leaf (like a fused projection).
    """
    if fused:
        qkv = torch.stack([q, k, v], 1).detach().requires_grad_(True)
        q, k, v = qkv.unbind(1)
        assert not q.is_contiguous()
    else:
        q, k, v = (x.detach().clone().requires_grad_(True) for x in (q, k, v))
    out = fn(q, k, v, offsets)
    g = torch.randn(out.shape, generator=torch.Generator(device=out.device).manual_seed(grad_seed),
                    dtype=torch.float64, device=out.device)
    out.backward(g.to(out.dtype))
    if fused:
        return (out.detach(), *qkv.grad.unbind(1))
    return out.detach(), q.grad, k.grad, v.grad


def reference(q, k, v, offsets):
    return reference_varlen_attention(q.double(), k.double(), v.double(), offsets)


def assert_close(actual, expected, atol, rtol, what):
    actual = actual.double()
    err = (actual - expected).abs()
    tol = atol + rtol * expected.abs()
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    assert bool((err <= tol).all()), f"{what}: max abs err {err.max().item():.3g} (atol {atol}, rtol {rtol})"


# --------------------------------------------------------------------------- reference sanity

def test_reference_matches_sdpa_per_sequence():
    q, k, v, offsets = make_inputs([5, 0, 9], dtype=torch.float64)
    ref = reference_varlen_attention(q, k, v, offsets)
    offs = offsets.tolist()
    for i in range(len(offs) - 1):
        s, e = offs[i], offs[i + 1]
        if s == e:
            continue
        sd = torch.nn.functional.scaled_dot_product_attention(*(x[s:e].transpose(0, 1) for x in (q, k, v)))
        torch.testing.assert_close(ref[s:e], sd.transpose(0, 1), atol=1e-12, rtol=1e-12)


# --------------------------------------------------------------------------- CPU backend

CPU_CASES = {
    "mixed_with_empty": [7, 0, 13, 1, 30],
    "query_blocks": [300, 5, 256, 257, 0, 40],  # > 256 tokens: the C++ kernel splits queries into blocks
    "scattered_equal_lengths": [5, 9, 5, 0, 9, 5, 1, 9],
    "equal_runs": [8, 8, 8, 0, 8, 5, 5, 17],
    "constant": [12, 12, 12, 12],
    "single": [21],
    "empty_first_last": [0, 9, 4, 0],
}


# backend="cpu" runs padbench's C++ kernel for float32/float64; flash_per_length is its fallback.
CPU_IMPLS = {
    "cpp": lambda *a, **kw: varlen_attention(*a, backend="cpu", **kw),
    "flash_per_length": flash_per_length,
}


@pytest.fixture(params=sorted(CPU_IMPLS))
def cpu_impl(request):
    if request.param == "cpp":
        ok, why = cpu_extension.load()
        assert ok, why  # a compiler and ninja are part of the test set-up: never test the fallback twice
    return CPU_IMPLS[request.param]


def test_cpu_kernel_is_built_and_reported():
    ok, what = cpu_extension.load()
    assert ok, what
    assert cpu_implementation(torch.float32).startswith("padbench C++ kernel")
    assert cpu_implementation(torch.float64).startswith("padbench C++ kernel")
    assert "not torch.bfloat16" in cpu_implementation(torch.bfloat16)
    assert environment("cpu")["cpu_attention"] == cpu_implementation(torch.float32)


def test_cpu_falls_back_when_the_kernel_cannot_be_built(monkeypatch):
    q, k, v, offsets = make_inputs([7, 0, 13])
    monkeypatch.setattr(cpu_extension, "load", lambda: (False, "no compiler here"))
    assert cpu_implementation(torch.float32) == "PyTorch flash kernel per length (no compiler here)"
    assert torch.equal(varlen_attention(q, k, v, offsets, backend="cpu"), flash_per_length(q, k, v, offsets))


def test_cpu_kernel_build_failure_is_one_clear_line(tmp_path, monkeypatch):
    bad = tmp_path / "broken.cpp"
    bad.write_text("this is not C++\n")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    why = cpu_extension._build("padbench_broken_test", [bad], [])
    assert why is not None and why.startswith("padbench's C++ CPU kernel could not be built: ")
    assert "error:" in why and "\n" not in why


@pytest.mark.parametrize("case", sorted(CPU_CASES))
@pytest.mark.parametrize("offsets_dtype", [torch.int32, torch.int64])
def test_cpu_forward_backward_match_float64(cpu_impl, case, offsets_dtype):
    q, k, v, offsets = make_inputs(CPU_CASES[case], nhead=3, head_dim=16, offsets_dtype=offsets_dtype)
    out, dq, dk, dv = fwd_bwd(cpu_impl, q, k, v, offsets)
    rout, rdq, rdk, rdv = fwd_bwd(reference, q.double(), k.double(), v.double(), offsets)
    assert out.shape == q.shape and out.dtype == q.dtype
    for name, a, b in (("out", out, rout), ("dq", dq, rdq), ("dk", dk, rdk), ("dv", dv, rdv)):
        assert_close(a, b, atol=2e-5, rtol=2e-5, what=f"cpu {case} {name}")


def test_cpu_strided_views_and_custom_scale(cpu_impl):
    """Views of a fused [T, 3, H, D] projection (what an encoder produces), non-default scale, hd=24."""
    q, k, v, offsets = make_inputs([6, 11, 0, 3], nhead=2, head_dim=24, fused=True)
    assert not q.is_contiguous()
    fn = lambda *a: cpu_impl(*a, scale=0.3)  # noqa: E731
    ref = lambda q, k, v, o: reference_varlen_attention(q.double(), k.double(), v.double(), o, scale=0.3)  # noqa: E731
    got, want = fwd_bwd(fn, q, k, v, offsets, fused=True), fwd_bwd(ref, q, k, v, offsets)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want):
        assert_close(a, b, atol=2e-5, rtol=2e-5, what=f"strided {name}")


def test_cpu_sequences_are_isolated():
    """Changing one sequence's tokens must not change any other sequence's output."""
    q, k, v, offsets = make_inputs([5, 7, 6])
    out = varlen_attention(q, k, v, offsets, backend="cpu")
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for x in (q2, k2, v2):
        x[5:12] = torch.randn(7, 2, 16) * 10
    out2 = varlen_attention(q2, k2, v2, offsets, backend="cpu")
    assert torch.equal(out[:5], out2[:5]) and torch.equal(out[12:], out2[12:])
    assert not torch.allclose(out[5:12], out2[5:12])


def test_cpu_gradcheck_float64(cpu_impl):
    q, k, v, offsets = make_inputs([3, 0, 4, 1], nhead=2, head_dim=3, dtype=torch.float64)
    inputs = tuple(x.requires_grad_(True) for x in (q, k, v))
    assert torch.autograd.gradcheck(lambda q, k, v: cpu_impl(q, k, v, offsets),
                                    inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("lengths", [[4, 0, 6], [0, 0, 0], [0]])
def test_cpu_empty_sequences_give_zeros_no_nan(cpu_impl, lengths):
    q, k, v, offsets = make_inputs(lengths)
    out, dq, dk, dv = fwd_bwd(cpu_impl, q, k, v, offsets)
    assert out.shape == q.shape
    for name, t in (("out", out), ("dq", dq), ("dk", dk), ("dv", dv)):
        assert torch.isfinite(t).all(), name
        assert t.shape == q.shape, name


def test_cpu_all_empty_returns_zero_rows_and_zero_grads(cpu_impl):
    q, k, v, offsets = make_inputs([0, 0])
    q.requires_grad_(True)
    out = cpu_impl(q, k, v, offsets)
    assert out.shape == (0, 2, 16)
    out.sum().backward()
    assert q.grad.shape == (0, 2, 16)


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_cpu_half_precision(dtype, tol):
    q, k, v, offsets = make_inputs([9, 0, 20, 3], dtype=dtype)
    out, dq, dk, dv = fwd_bwd(lambda *a: varlen_attention(*a, backend="cpu"), q, k, v, offsets)
    rout, rdq, rdk, rdv = fwd_bwd(reference, q, k, v, offsets)  # reference on the rounded inputs
    assert out.dtype == dtype and dq.dtype == dtype
    for name, a, b in (("out", out, rout), ("dq", dq, rdq), ("dk", dk, rdk), ("dv", dv, rdv)):
        assert_close(a, b, atol=tol, rtol=tol, what=f"{dtype} {name}")


def test_default_backend_on_cpu_is_cpu():
    q, k, v, offsets = make_inputs([4, 5])
    torch.testing.assert_close(varlen_attention(q, k, v, offsets), varlen_attention(q, k, v, offsets, backend="cpu"),
                               atol=0, rtol=0)


def test_check_false_and_max_seqlen_give_same_result():
    q, k, v, offsets = make_inputs([4, 0, 5])
    a = varlen_attention(q, k, v, offsets, backend="cpu")
    b = varlen_attention(q, k, v, offsets, backend="cpu", check=False, max_seqlen=64)
    assert torch.equal(a, b)


def test_runs_group_equal_consecutive_lengths():
    offs = [0, 8, 16, 24, 24, 32, 37, 42, 59]  # 8 8 8 0 8 5 5 17
    assert runs_from_offsets(offs) == [(0, 4, 8), (32, 2, 5), (42, 1, 17)]
    assert runs_from_offsets([0, 0, 0]) == []


def test_plan_groups_one_call_per_length():
    offs = [0, 5, 14, 19, 19, 28, 33, 34]  # 5 9 5 0 9 5 1
    groups = {g.length: g for g in plan_groups(offs)}
    assert sorted(groups) == [1, 5, 9]
    assert groups[1].index is None and (groups[1].start, groups[1].count) == (33, 1)
    assert groups[5].count == 3 and groups[5].index.tolist() == [*range(0, 5), *range(14, 19), *range(28, 33)]
    assert groups[9].count == 2 and groups[9].index.tolist() == [*range(5, 14), *range(19, 28)]
    constant = plan_groups([0, 4, 8, 12])
    assert len(constant) == 1 and constant[0].index is None and constant[0].count == 3
    assert plan_groups([0, 0]) == []


# --------------------------------------------------------------------------- input errors

def _bad(kind):
    q, k, v, offsets = make_inputs([3, 4])
    kw = {}
    if kind == "shape":
        k = k[:, :1]
    elif kind == "ndim":
        q, k, v = q.flatten(1), k.flatten(1), v.flatten(1)
    elif kind == "int_dtype":
        q, k, v = (x.to(torch.int32) for x in (q, k, v))
    elif kind == "mixed_dtype":
        v = v.double()
    elif kind == "offsets_float":
        offsets = offsets.float()
    elif kind == "offsets_2d":
        offsets = offsets[None]
    elif kind == "offsets_start":
        offsets = torch.tensor([1, 3, 7])
    elif kind == "offsets_end":
        offsets = torch.tensor([0, 3, 6])
    elif kind == "offsets_decreasing":
        offsets = torch.tensor([0, 5, 4, 7])
    elif kind == "device":
        offsets = offsets.to("meta")
    elif kind == "nan_q":
        q[2, 1, 3] = float("nan")
    elif kind == "inf_k":
        k[5, 0, 0] = float("inf")
    elif kind == "nan_v":
        v[0, 0, 0] = float("nan")
    elif kind == "scale_nan":
        kw["scale"] = float("nan")
    elif kind == "max_seqlen_short":
        kw["max_seqlen"] = 3
    elif kind == "backend_name":
        kw["backend"] = "cuda"
    elif kind == "not_tensor":
        q = q.tolist()
    return q, k, v, offsets, kw


@pytest.mark.parametrize("kind,pattern", [
    ("shape", "same shape"),
    ("ndim", r"\[T, H, head_dim\]"),
    ("int_dtype", "dtype must be one of"),
    ("mixed_dtype", "share one dtype"),
    ("offsets_float", "offsets dtype"),
    ("offsets_2d", "offsets must be 1-D"),
    ("offsets_start", "start at 0"),
    ("offsets_end", "end at the number of packed tokens"),
    ("offsets_decreasing", "non-decreasing"),
    ("device", "one device"),
    ("nan_q", "q contains NaN or Inf .first at packed token 2"),
    ("inf_k", "k contains NaN or Inf"),
    ("nan_v", "v contains NaN or Inf"),
    ("scale_nan", "scale must be finite"),
    ("max_seqlen_short", "max_seqlen = 3 is shorter"),
    ("backend_name", "backend must be"),
    ("not_tensor", "q must be a torch.Tensor"),
])
def test_bad_input_raises_padbench_error(kind, pattern):
    q, k, v, offsets, kw = _bad(kind)
    with pytest.raises(PadbenchError, match=pattern):
        varlen_attention(q, k, v, offsets, **kw)


def test_cpu_backend_refuses_non_cpu_tensors():
    q, k, v, offsets = (x.to("meta") for x in make_inputs([3, 4]))
    with pytest.raises(UnsupportedError):
        varlen_attention(q, k, v, offsets, backend="cpu", check=False)
    ok, why = backend_available("cpu", "meta")
    assert not ok and "CPU tensors" in why


def test_backend_available_reports_cuda_absence():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    ok, why = backend_available(None, "cuda")
    assert not ok and "CUDA" in why


# --------------------------------------------------------------------------- Triton: no interpreter

_NO_INTERP_SCRIPT = r"""
import json, os, sys
os.environ.pop("TRITON_INTERPRET", None)
import torch
from padbench.errors import UnsupportedError
from padbench.kernels import varlen_attention
res = {}
q = torch.randn(7, 2, 16); offs = torch.tensor([0, 3, 7])
try:
    varlen_attention(q, q, q, offs, backend="triton")
    res["compiled_on_cpu"] = "no error"
except UnsupportedError as e:
    res["compiled_on_cpu"] = str(e)
sys.modules["triton"] = None          # as if triton were not installed
sys.modules.pop("padbench.kernels.triton_attention", None)
import padbench.kernels
padbench.kernels.__dict__.pop("triton_attention", None)
try:
    varlen_attention(q, q, q, offs, backend="triton")
    res["not_installed"] = "no error"
except UnsupportedError as e:
    res["not_installed"] = str(e)
print("RESULT" + json.dumps(res))
"""


def _run_child(code, env_extra, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(env_extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line is not None, f"child failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(line[len("RESULT"):])


def test_triton_on_cpu_without_interpreter_is_unsupported():
    pytest.importorskip("triton")
    res = _run_child(_NO_INTERP_SCRIPT, {})
    assert "TRITON_INTERPRET=1" in res["compiled_on_cpu"]
    assert "needs the triton package" in res["not_installed"]


# --------------------------------------------------------------------------- Triton: interpreter

def _interpreter_checks() -> dict:
    """Runs in a child process with TRITON_INTERPRET=1. Returns {check: {"ok": bool, "detail": str}}."""
    assert os.environ.get("TRITON_INTERPRET") == "1"
    from padbench.kernels import triton_attention as ta
    assert ta.INTERPRETED
    results = {}

    def record(name, fn):
        try:
            fn()
            results[name] = {"ok": True, "detail": ""}
        except Exception as exc:  # reported by the parent test
            results[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}

    tri = lambda *a, **kw: varlen_attention(*a, backend="triton", **kw)  # noqa: E731

    def compare(lengths, head_dim, dtype=torch.float32, tol=2e-5, blocks=None, fused=False,
                offsets_dtype=torch.int64, nhead=2):
        ta._BLOCK_OVERRIDE = blocks
        try:
            q, k, v, offsets = make_inputs(lengths, nhead=nhead, head_dim=head_dim, dtype=dtype, fused=fused,
                                           offsets_dtype=offsets_dtype)
            got = fwd_bwd(tri, q, k, v, offsets, fused=fused)
            want = fwd_bwd(reference, q, k, v, offsets)
            for name, a, b in zip(("out", "dq", "dk", "dv"), got, want):
                assert a.dtype == dtype, f"{name} dtype {a.dtype}"
                assert_close(a, b, atol=tol, rtol=tol, what=name)
        finally:
            ta._BLOCK_OVERRIDE = None

    # T = 60, B = 5 with an empty sequence; 16x16 tiles so sequences span several tiles with ragged tails
    lengths = [17, 0, 25, 1, 17]
    record("fp32_blocks16_hd16", lambda: compare(lengths, 16, blocks=(16, 16)))
    record("fp32_blocks16x32_hd24_strided_int32",
           lambda: compare(lengths, 24, blocks=(16, 32), fused=True, offsets_dtype=torch.int32))
    record("fp32_default_blocks_hd16", lambda: compare([33, 0, 5, 22], 16, nhead=1))
    record("fp64_hd16", lambda: compare(lengths, 16, dtype=torch.float64, tol=1e-12, blocks=(16, 16)))
    record("fp16_hd16", lambda: compare(lengths, 16, dtype=torch.float16, tol=2e-3, blocks=(16, 16)))
    record("bf16_hd16", lambda: compare(lengths, 16, dtype=torch.bfloat16, tol=3e-2, blocks=(16, 16)))

    def gradcheck():
        ta._BLOCK_OVERRIDE = (16, 16)
        try:
            q, k, v, offsets = make_inputs([3, 0, 18], nhead=1, head_dim=4, dtype=torch.float64)
            inputs = tuple(x.requires_grad_(True) for x in (q, k, v))
            assert torch.autograd.gradcheck(lambda q, k, v: tri(q, k, v, offsets), inputs,
                                            eps=1e-6, atol=1e-8, rtol=1e-6, fast_mode=True)
        finally:
            ta._BLOCK_OVERRIDE = None
    record("gradcheck_fp64", gradcheck)

    def empty():
        for lens in ([5, 0, 0, 3], [0, 0], [0]):
            q, k, v, offsets = make_inputs(lens)
            for name, t in zip(("out", "dq", "dk", "dv"), fwd_bwd(tri, q, k, v, offsets)):
                assert t.shape == q.shape, f"{lens} {name} shape {tuple(t.shape)}"
                assert torch.isfinite(t).all(), f"{lens} {name} has NaN/Inf"
    record("empty_sequences_no_nan", empty)

    def matches_cpu_backend():
        q, k, v, offsets = make_inputs([10, 0, 31, 2], nhead=2, head_dim=32)
        a = fwd_bwd(tri, q, k, v, offsets)
        b = fwd_bwd(lambda *x: varlen_attention(*x, backend="cpu"), q, k, v, offsets)
        for name, x, y in zip(("out", "dq", "dk", "dv"), a, b):
            assert_close(x, y.double(), atol=3e-5, rtol=3e-5, what=name)
    record("matches_cpu_backend_hd32", matches_cpu_backend)

    def max_seqlen_no_check():
        q, k, v, offsets = make_inputs([7, 12])
        a = tri(q, k, v, offsets)
        b = tri(q, k, v, offsets, max_seqlen=40, check=False)
        assert torch.equal(a, b)
    record("max_seqlen_check_false", max_seqlen_no_check)
    return results


INTERP_CHECKS = ["fp32_blocks16_hd16", "fp32_blocks16x32_hd24_strided_int32", "fp32_default_blocks_hd16",
                 "fp64_hd16", "fp16_hd16", "bf16_hd16", "gradcheck_fp64", "empty_sequences_no_nan",
                 "matches_cpu_backend_hd32", "max_seqlen_check_false"]


@pytest.fixture(scope="module")
def interpreter_results():
    pytest.importorskip("triton")
    code = ("import json, runpy\n"
            f"ns = runpy.run_path({str(HERE)!r})\n"
            "print('RESULT' + json.dumps(ns['_interpreter_checks']()))\n")
    return _run_child(code, {"TRITON_INTERPRET": "1"})


@pytest.mark.parametrize("check", INTERP_CHECKS)
def test_triton_interpreter(interpreter_results, check):
    assert check in interpreter_results, f"check {check} did not run"
    r = interpreter_results[check]
    assert r["ok"], r["detail"]


# --------------------------------------------------------------------------- Triton: real GPU

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype,tol", [(torch.float16, 3e-3), (torch.bfloat16, 3e-2), (torch.float32, 1e-4)])
@pytest.mark.parametrize("head_dim", [16, 64, 80, 128])
def test_triton_cuda_matches_float64(dtype, tol, head_dim):
    lengths = [1, 0, 77, 128, 300, 5, 0, 64]
    q, k, v, offsets = make_inputs(lengths, nhead=4, head_dim=head_dim, dtype=dtype, device="cuda")
    got = fwd_bwd(lambda *a: varlen_attention(*a, backend="triton"), q, k, v, offsets)
    want = fwd_bwd(reference, q, k, v, offsets)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want):
        assert a.is_cuda and a.dtype == dtype
        # gradients scale with sqrt(L); compare relative to each tensor's magnitude
        scale = max(1.0, b.abs().max().item())
        assert_close(a, b, atol=tol * scale, rtol=tol, what=f"cuda {dtype} hd{head_dim} {name}")


def test_scale_default_is_inverse_sqrt_head_dim():
    q, k, v, offsets = make_inputs([6], head_dim=16)
    a = varlen_attention(q, k, v, offsets, backend="cpu")
    b = varlen_attention(q, k, v, offsets, backend="cpu", scale=1 / math.sqrt(16))
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- kernel benchmark

def test_kernel_bench_records_and_errors():
    from padbench.kernel_bench import attention_flops, run_kernel_bench

    recs = run_kernel_bench(device="cpu", batch_size=4, max_len=24, nhead=2, head_dim=16,
                            distributions=["uniform", "constant"], mode="both",
                            methods=["padbench", "sdpa_padded", "sdpa_loop", "sdpa_njt", "varlen_attn"],
                            min_run_time=0.01)
    assert len(recs) == 2 * 5 * 2
    by = {(r["distribution"], r["method"], r["mode"]): r for r in recs}
    for dist in ("uniform", "constant"):
        for method in ("padbench", "sdpa_padded", "sdpa_loop", "sdpa_njt"):
            for mode in ("forward", "backward"):
                r = by[(dist, method, mode)]
                assert r["status"] == "ok", (dist, method, mode, r["message"])
                assert r["time_s"] > 0 and r["flops_per_s"] > 0
                assert r["max_abs_err"] < 1e-5, (dist, method, r["max_abs_err"])
        r = by[(dist, "varlen_attn", "forward")]
        assert r["status"] == "unsupported" and "CUDA" in r["message"]
    r = by[("uniform", "padbench", "backward")]
    lengths_sq = r["flops"] / (4 * 2 * 16 * 2.5)
    assert r["flops"] == pytest.approx(2.5 * by[("uniform", "padbench", "forward")]["flops"])
    assert lengths_sq == int(lengths_sq)
    assert attention_flops([3, 4], 2, 16) == 4 * (9 + 16) * 2 * 16


def test_kernel_cli_writes_json(tmp_path, capsys):
    import argparse

    from padbench.cli.kernel import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="cmd"))
    out = tmp_path / "k.json"
    args = parser.parse_args(["kernel", "--dists", "uniform", "--batch-size", "3", "--max-len", "16",
                              "--nhead", "2", "--head-dim", "16", "--mode", "forward",
                              "--methods", "padbench,sdpa_padded", "--min-time", "0.01", "--out", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "speedup_vs_padded" in text and "padbench" in text
    doc = json.loads(out.read_text())
    assert doc["kind"] == "padbench.kernel" and len(doc["records"]) == 2
    bad = parser.parse_args(["kernel", "--out", str(tmp_path / "x.pbjson")])
    with pytest.raises(PadbenchError, match="pbjson"):
        bad.func(bad)


def test_kernel_bench_rejects_unknown_method():
    from padbench.kernel_bench import run_kernel_bench

    with pytest.raises(PadbenchError, match="unknown method"):
        run_kernel_bench(methods=["nope"], distributions=["uniform"], batch_size=2, max_len=8)


@pytest.mark.slow
def test_kernel_bench_flex_forward_only_on_cpu():
    from padbench.kernel_bench import run_kernel_bench

    recs = run_kernel_bench(device="cpu", batch_size=3, max_len=40, nhead=2, head_dim=16,
                            distributions=["uniform"], mode="both", methods=["flex"], min_run_time=0.01)
    fwd, bwd = recs
    assert fwd["status"] == "ok" and fwd["max_abs_err"] < 1e-5, fwd["message"]
    assert bwd["status"] == "unsupported" and "backward" in bwd["message"]


# --------------------------------------------------------------------------- Triton: real compiler, no GPU

_AOT_SCRIPT = r"""
import json, torch
from padbench.kernels.aot_check import compile_kernels
rows = compile_kernels(90, (torch.float16, torch.bfloat16, torch.float32, torch.float64), (80,))
print("RESULT" + json.dumps(rows))
"""


def test_triton_kernels_compile_for_sm90_without_gpu():
    """The interpreter accepts programs the compiler refuses; compile every kernel for H100."""
    pytest.importorskip("triton")
    try:
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"this triton cannot compile ahead of time: {exc}")
    rows = _run_child(_AOT_SCRIPT, {"TRITON_DEFAULT_FP_FUSION": "1"}, timeout=600)
    assert len(rows) == 4 * 4
    for row in rows:
        assert row["shared_bytes"] <= 227 * 1024, row  # H100 per-block shared memory
