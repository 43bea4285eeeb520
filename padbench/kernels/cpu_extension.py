"""Load padbench's C++ CPU kernels (`csrc/`): varlen attention and the dense layers.

Installing padbench builds them (`setup.py`: one op library per CPU capability, since ATen's
vector code is compiled for one vector width), so `load()` only loads the library matching the
capability torch dispatches to here, in milliseconds, and no measurement ever waits on a
compiler. Each library's name carries `build_key`, a hash of the sources, flags and torch build:
a library built from other sources or for another torch is never loaded.

Where there is no matching installed library (torch missing or no compiler at install time,
sources edited since), `load()` compiles them just-in-time with `torch.utils.cpp_extension`
(a C++ compiler and ninja needed). That build's name and source folder carry the same key, so
two checkouts, virtualenvs or asv environments never rebuild over each other (torch's build file
records the source paths). Where neither works, `load()` says why, `varlen_attention`'s CPU
backend falls back to PyTorch's flash kernel per length (`cpu_attention`) and `padbench.layers`
to torch's ops; `covers(dtype)` is the one test both make. Which route ran is part of the
description recorded with every result.

Ops, float32 and float64: ``torch.ops.padbench.varlen_attention_fwd(q, k, v, offsets, scale)
-> (out, lse)`` and ``varlen_attention_bwd(grad_out, q, k, v, out, lse, offsets, scale)``
(`varlen_attention_cpu.cpp`); ``linear(x, weight, bias)`` and ``dense_block(x, attn, ...)``,
an encoder layer's QKV projection and everything after attention at inference
(`dense_layers_cpu.cpp`, used by `padbench.layers`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

import torch

__all__ = ["load", "covers", "capability", "route", "build_key", "library_name", "compile_flags",
           "CAPABILITIES", "DTYPES", "SOURCES"]

_HERE = Path(__file__).parent
SOURCES = tuple(_HERE / "csrc" / name for name in ("varlen_attention_cpu.cpp", "dense_layers_cpu.cpp"))
_HEADERS = (_HERE / "csrc" / "blas.h",)
DTYPES = (torch.float32, torch.float64)

# Flags torch builds its own kernels of each capability with (ATen's Vectorized<> picks its
# implementation from the CPU_CAPABILITY_* define).
_CAPABILITY_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-DCPU_CAPABILITY_AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2"],
}
CAPABILITIES = (*_CAPABILITY_FLAGS, "DEFAULT")
LDFLAGS = ["-fopenmp"]
_OPS = ("varlen_attention_fwd", "dense_block")


def capability() -> str:
    """The CPU capability torch dispatches to here (AVX512, AVX2, DEFAULT): what the kernels are built for."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch: no query, build the portable version
        return "DEFAULT"


def compile_flags(cap: str) -> list[str]:
    """C++ flags of the `cap` library (the installed and the just-in-time build use the same)."""
    return ["-O3", "-g0", "-fopenmp", *_CAPABILITY_FLAGS.get(cap, [])]  # -g0: Python's CFLAGS ask for -g


def build_key(cap: str) -> str:
    """12 hex digits over everything the `cap` library's code depends on: sources, flags, torch build."""
    h = hashlib.sha256()
    for path in (*SOURCES, *_HEADERS):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    torch_build = (torch.__version__, getattr(torch.version, "git_version", ""), torch.compiled_with_cxx11_abi())
    h.update(repr((compile_flags(cap), LDFLAGS, torch_build)).encode())
    return h.hexdigest()[:12]


def library_name(cap: str) -> str:
    """Module name (under padbench.kernels) of the `cap` library that setup.py builds."""
    return f"_cpu_{cap.lower()}_{build_key(cap)}"


def _installed(cap: str) -> tuple[Path | None, str]:
    """(path of the installed `cap` library, '') or (None, why there is none)."""
    suffix = "." + sysconfig.get_config_var("EXT_SUFFIX").rsplit(".", 1)[-1]  # built without the ABI tag
    path = _HERE / (library_name(cap) + suffix)
    if path.exists():
        return path, ""
    if any(_HERE.glob(f"_cpu_{cap.lower()}_*{suffix}")):
        return None, f"the installed {cap} build is of other sources or another torch"
    return None, f"padbench was installed without its {cap} library"


def _ninja_on_path() -> None:
    """`pip install ninja` puts it next to the interpreter, which a non-activated venv lacks on PATH."""
    if shutil.which("ninja") is None:
        scripts = os.path.dirname(sys.executable)
        if os.path.exists(os.path.join(scripts, "ninja")):
            os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")


def _jit_sources(name: str) -> list[Path]:
    """The sources copied once into a folder named by their key: one path and one mtime for every checkout."""
    from torch.utils import cpp_extension

    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root())
    folder = root / "padbench_sources" / name
    folder.mkdir(parents=True, exist_ok=True)
    for src in (*SOURCES, *_HEADERS):
        if not (folder / src.name).exists():
            fd, tmp = tempfile.mkstemp(dir=folder)
            with os.fdopen(fd, "wb") as fh:
                fh.write(src.read_bytes())
            os.replace(tmp, folder / src.name)
    return [folder / src.name for src in SOURCES]


def _build(name: str, sources, flags: list[str]) -> str | None:
    """Compile and load `sources` just-in-time as one torch op library; None on success, else why not (one line)."""
    try:
        from torch.utils import cpp_extension

        _ninja_on_path()
        cpp_extension.load(name=name, sources=[str(s) for s in sources], extra_cflags=flags,
                           extra_ldflags=LDFLAGS, is_python_module=False, verbose=False)
    except Exception as exc:  # no compiler, no ninja, a torch without the MKL symbols, ...
        lines = str(exc).strip().splitlines()
        errors = [ln.strip() for ln in lines if "error:" in ln or "undefined symbol" in ln] or lines
        return f"padbench's C++ CPU kernel could not be built: {(errors or [type(exc).__name__])[0][:300]}"
    return None


@functools.cache
def _load() -> tuple[bool, str]:
    """(True, how it was built) or (False, why not). Loads one library per process: they share a namespace."""
    cap = capability()
    try:
        path, not_installed = _installed(cap)
    except OSError as exc:  # sources missing from this installation: nothing can be checked or built
        return False, f"padbench's C++ CPU kernel sources are missing ({exc})"
    if path is not None:
        try:
            torch.ops.load_library(str(path))
            note = f"{cap}, installed build"
        except OSError as exc:
            not_installed = f"the installed {cap} build did not load: {str(exc.__cause__ or exc)[:200]}"
    if path is None or not_installed:
        name = f"padbench_cpu_{cap.lower()}_{build_key(cap)}"
        try:
            why = _build(name, _jit_sources(name), compile_flags(cap))
        except OSError as exc:  # an unwritable extension cache
            why = f"padbench's C++ CPU kernel could not be built: {exc}"
        if why:
            return False, f"{why}; and {not_installed}"
        note = f"{cap}, just-in-time build: {not_installed}"
    if not all(hasattr(torch.ops.padbench, op) for op in _OPS):
        return False, f"padbench's C++ CPU kernel was loaded ({note}) but registered no ops"
    return True, note


def load() -> tuple[bool, str]:
    """(True, description) once the ops are registered, else (False, why not). At most one load or build per process."""
    ok, note = _load()
    return (True, f"padbench C++ kernel ({note})") if ok else (False, note)


def route() -> str:
    """How the loaded kernels were built, e.g. 'AVX2, installed build' (after a successful `load()`)."""
    return _load()[1]


def covers(dtype: torch.dtype) -> bool:
    """Whether padbench's C++ CPU ops run `dtype` here: float32/float64, and the build loaded."""
    return dtype in DTYPES and load()[0]
