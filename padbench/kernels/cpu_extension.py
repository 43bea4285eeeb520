"""Build and load padbench's C++ CPU kernels (`csrc/`): varlen attention and the dense layers.

The kernels are compiled on first use with `torch.utils.cpp_extension` (a C++ compiler and
ninja are needed; torch caches the build under ``$TORCH_EXTENSIONS_DIR`` or
``~/.cache/torch_extensions`` and rebuilds only when the source or flags change). It is
compiled for the vector width torch itself dispatches to on this CPU, so the build is one per
capability. Where it cannot be built or loaded, `load()` says why, `varlen_attention`'s CPU
backend falls back to PyTorch's flash kernel per length (`cpu_attention`) and `padbench.layers`
to torch's ops; `covers(dtype)` is the one test both make.

Ops, float32 and float64: ``torch.ops.padbench.varlen_attention_fwd(q, k, v, offsets, scale)
-> (out, lse)`` and ``varlen_attention_bwd(grad_out, q, k, v, out, lse, offsets, scale)``
(`varlen_attention_cpu.cpp`); ``linear(x, weight, bias)`` and ``dense_block(x, attn, ...)``,
an encoder layer's QKV projection and everything after attention at inference
(`dense_layers_cpu.cpp`, used by `padbench.layers`).
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path

import torch

__all__ = ["load", "covers", "capability", "DTYPES", "SOURCES"]

SOURCES = tuple(Path(__file__).with_name("csrc") / name for name in ("varlen_attention_cpu.cpp", "dense_layers_cpu.cpp"))
DTYPES = (torch.float32, torch.float64)

# Flags torch builds its own kernels of each capability with (ATen's Vectorized<> picks its
# implementation from the CPU_CAPABILITY_* define).
_CAPABILITY_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-DCPU_CAPABILITY_AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2"],
}


def capability() -> str:
    """The CPU capability torch dispatches to here (AVX512, AVX2, DEFAULT): what the kernels are built for."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch: no query, build the portable version
        return "DEFAULT"


def _ninja_on_path() -> None:
    """`pip install ninja` puts it next to the interpreter, which a non-activated venv lacks on PATH."""
    if shutil.which("ninja") is None:
        scripts = os.path.dirname(sys.executable)
        if os.path.exists(os.path.join(scripts, "ninja")):
            os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")


def _build(name: str, sources, flags: list[str]) -> str | None:
    """Compile and load `sources` as one torch op library; None on success, else why not (one line)."""
    try:
        from torch.utils import cpp_extension

        _ninja_on_path()
        cpp_extension.load(name=name, sources=[str(s) for s in sources], extra_cflags=["-O3", "-fopenmp", *flags],
                           extra_ldflags=["-fopenmp"], is_python_module=False, verbose=False)
    except Exception as exc:  # no compiler, no ninja, a torch without the MKL symbols, ...
        lines = str(exc).strip().splitlines()
        errors = [ln.strip() for ln in lines if "error:" in ln or "undefined symbol" in ln] or lines
        return f"padbench's C++ CPU kernel could not be built: {(errors or [type(exc).__name__])[0][:300]}"
    return None


@functools.cache
def load() -> tuple[bool, str]:
    """(True, description) once the ops are registered, else (False, why not). Builds at most once per process."""
    cap = capability()
    why = _build(f"padbench_cpu_{cap.lower()}", SOURCES, _CAPABILITY_FLAGS.get(cap, []))
    if why:
        return False, why
    if not all(hasattr(torch.ops.padbench, op) for op in ("varlen_attention_fwd", "dense_block")):
        return False, "padbench's C++ CPU kernel was built but registered no ops"
    return True, f"padbench C++ kernel ({cap})"


def covers(dtype: torch.dtype) -> bool:
    """Whether padbench's C++ CPU ops run `dtype` here: float32/float64, and the build loaded."""
    return dtype in DTYPES and load()[0]
