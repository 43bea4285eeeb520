"""Compile padbench's Triton kernels for a CUDA target without a GPU (ahead of time).

The interpreter (TRITON_INTERPRET=1) runs kernels as numpy code and accepts programs the real
compiler refuses (e.g. a loop-carried value changing dtype), so CI without a GPU compiles every
kernel to PTX/cubin for sm_90 with triton's bundled ptxas as well. Also reports shared memory,
and registers/spills when a ptxas that reads the PTX version is available.

    padbench aot-check [--arch 90] [--dtypes float16,float32] [--head-dims 64,80]
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import torch

from ..model import dtype_name

_TY = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64"}
_TENSORS = ("Q", "K", "V", "O", "DO", "DQ", "DK", "DV")


def _signature(fn, dtype, constexprs):
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in _TENSORS:
            sig[name] = "*" + _TY[dtype]
        elif name in ("LSE", "DELTA"):
            sig[name] = "*fp64" if dtype == torch.float64 else "*fp32"
        elif name == "OFFS":
            sig[name] = "*i64"
        elif "scale" in name:
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    return sig


def _ptxas_stats(ptx: str) -> str:
    import triton

    bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    for exe in ("ptxas-blackwell", "ptxas"):
        path = os.path.join(bindir, exe)
        if not os.path.exists(path):
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as fh:
            fh.write(ptx)
        try:
            arch = re.search(r"\.target\s+(sm_\w+)", ptx).group(1)
            out = subprocess.run([path, "-v", "--gpu-name", arch, fh.name, "-o", os.devnull],
                                 capture_output=True, text=True, timeout=120)
        finally:
            os.unlink(fh.name)
        m = re.search(r"(\d+) bytes spill stores.*?Used (\d+) registers", out.stderr + out.stdout, re.S)
        if m:
            return f"regs={m.group(2)} spill_stores={m.group(1)}B"
    return ""


def compile_kernels(arch: int = 90, dtypes=(torch.float16, torch.float32), head_dims=(64,)) -> list[dict]:
    """Compile forward, preprocess and both backward kernels with the launch table's first
    configuration for each dtype x head_dim. Raises on a compile error."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from padbench.kernels import triton_attention as ta

    target = GPUTarget("cuda", arch, 32)
    rows = []
    for dtype in dtypes:
        flags = ta._dtype_flags(dtype)
        for hd in head_dims:
            bd = max(16, triton.next_power_of_2(hd))
            jobs = [(ta._varlen_bwd_preprocess, dict(HEAD_DIM=hd, BLOCK_D=bd, BLOCK_T=64, ACC=flags["ACC"]),
                     dict(num_warps=4, num_stages=1))]
            for kind, fns in (("fwd", [ta._varlen_fwd_kernel]),
                              ("bwd", [ta._varlen_bwd_dkdv_kernel, ta._varlen_bwd_dq_kernel])):
                cfg = ta.block_config(kind, dtype, hd)[0]
                for fn in fns:
                    consts = dict(HEAD_DIM=hd, BLOCK_D=bd, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], **flags)
                    jobs.append((fn, consts, dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])))
            for fn, consts, opts in jobs:
                src = ASTSource(fn, _signature(fn, dtype, consts), constexprs=consts)
                kernel = triton.compile(src, target=target, options=opts)
                rows.append(dict(kernel=fn.__name__, dtype=dtype_name(dtype), head_dim=hd,
                                 block_m=consts.get("BLOCK_M"), block_n=consts.get("BLOCK_N"), **opts,
                                 shared_bytes=kernel.metadata.shared, ptxas=_ptxas_stats(kernel.asm["ptx"])))
    return rows
