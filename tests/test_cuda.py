"""padbench's Triton varlen attention on a CUDA GPU against the float64 reference: fp32, fp16 and
bf16, forward and backward, empty sequences, sequences up to 8k tokens.

Marked `cuda` (conftest skips them where torch sees no GPU; `make gpu-check` runs them first).
`test_check_runs_on_the_interpreter` runs the same `check` at toy sizes on the Triton interpreter,
so that this file cannot rot on CPU-only CI.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from padbench.kernels import reference_varlen_attention, varlen_attention

HERE = Path(__file__).resolve()
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Largest error allowed, relative to the reference's largest value. The reference sees the same
# rounded inputs, so only the kernel's own roundings count: P and dS cast to the input dtype before
# their matmuls, and the output's final cast.
TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 4e-2}


def check(lengths, dtype, *, nhead=2, head_dim=64, device="cuda", seed=0) -> dict:
    """Forward and backward of backend='triton' against the float64 reference on the same inputs.

    Returns {"out"|"dq"|"dk"|"dv": error relative to the reference's largest value}; raises
    AssertionError on a wrong shape or dtype, a non-finite value or an error above TOL.
    """
    g = torch.Generator().manual_seed(seed)
    T = sum(lengths)
    offsets = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int64, device=device)
    q, k, v, dout = (torch.randn(T, nhead, head_dim, generator=g, dtype=torch.float64).to(device, dtype)
                     for _ in range(4))
    leaves = [x.clone().requires_grad_(True) for x in (q, k, v)]
    out = varlen_attention(*leaves, offsets, backend="triton")
    grads = torch.autograd.grad(out, leaves, dout, allow_unused=True)
    got = dict(zip(("out", "dq", "dk", "dv"), (out, *grads)))
    for name, t in got.items():
        if T == 0 and t is None:  # nothing to differentiate
            continue
        assert t.shape == (T, nhead, head_dim) and t.dtype == dtype and t.device == q.device, name
        assert bool(torch.isfinite(t).all()), f"{name} has NaN/Inf for lengths {lengths}"
    if T == 0:
        return {}
    ref_leaves = [x.double().requires_grad_(True) for x in (q, k, v)]
    ref = reference_varlen_attention(*ref_leaves, offsets)
    want = dict(zip(("out", "dq", "dk", "dv"), (ref, *torch.autograd.grad(ref, ref_leaves, dout.double()))))
    errs = {}
    for name, w in want.items():
        w = w.detach()
        errs[name] = float((got[name].detach().double() - w).abs().max() / w.abs().max().clamp_min(1e-30))
    bad = {n: e for n, e in errs.items() if not e <= TOL[dtype]}
    assert not bad, f"{dtype} lengths {lengths}: relative errors {bad} above {TOL[dtype]}"
    return errs


EMPTY = {
    "empty_first_middle_last": [0, 17, 0, 0, 130, 1, 0],
    "all_empty": [0, 0, 0],
    "single_empty": [0],
}
LONG = {
    "one_8k": [8192],
    "8k_with_short_and_empty": [8192, 0, 1, 4097, 2048, 3],
}


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("case", sorted(EMPTY))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_empty_sequences(case, dtype):
    check(EMPTY[case], dtype)


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("case", sorted(LONG))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_long_sequences(case, dtype):
    check(LONG[case], dtype)


@pytest.mark.cuda
@cuda_only
def test_long_sequence_head_dim_128_bf16():
    check([8192, 5], torch.bfloat16, head_dim=128)


_CHILD = r"""
import json, runpy, sys, torch
ns = runpy.run_path(sys.argv[1])
errs = {}
for dt in ns["DTYPES"]:
    errs[str(dt)] = ns["check"]([0, 20, 0, 37, 1], dt, nhead=1, head_dim=16, device="cpu")
    assert ns["check"]([0, 0], dt, nhead=1, head_dim=16, device="cpu") == {}
print("RESULT" + json.dumps(errs))
"""


def test_check_runs_on_the_interpreter():
    """`check` itself, at toy sizes, with the kernels on the Triton interpreter (CPU)."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = str(HERE.parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(HERE)], env=env, capture_output=True, text=True,
                          timeout=300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line is not None, f"child failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    errs = json.loads(line[len("RESULT"):])
    assert set(errs) == {str(dt) for dt in DTYPES}
    assert all(set(e) == {"out", "dq", "dk", "dv"} for e in errs.values())
