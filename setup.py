"""Build padbench's C++ CPU kernels at install time (the metadata lives in pyproject.toml).

One op library per CPU capability (`cpu_extension.CAPABILITIES`); at run time
`padbench.kernels.cpu_extension.load()` loads the one torch dispatches to, so no measurement
waits on a compiler. They are built against the torch of the build environment, hence
``pip install --no-build-isolation``. Without torch or a working compiler the install still
succeeds, without them: padbench then builds them on first use, or falls back to torch's ops.
"""

import importlib.util
import os
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def _warn(msg: str) -> None:
    print(f"WARNING: padbench: {msg}", file=sys.stderr)


def _cpu_extension():
    """padbench.kernels.cpu_extension, read from this tree without importing the package."""
    spec = importlib.util.spec_from_file_location("_padbench_cpu_extension", ROOT / "padbench/kernels/cpu_extension.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kernels() -> dict:
    if os.environ.get("PADBENCH_CPU_KERNELS") == "0":  # e.g. the GPU check, which never runs them
        _warn("PADBENCH_CPU_KERNELS=0: the C++ kernels are not built at install (padbench builds them on first use)")
        return {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError as exc:
        _warn(f"torch is not importable here ({exc}); the C++ kernels are not built at install "
              "(install with --no-build-isolation into an environment that has torch)")
        return {}
    ext = _cpu_extension()
    ext._ninja_on_path()
    sources = [os.path.relpath(s, ROOT) for s in ext.SOURCES]

    def library(cap: str):
        lib = CppExtension(f"padbench.kernels.{ext.library_name(cap)}", sources,
                           extra_compile_args={"cxx": ext.compile_flags(cap)}, extra_link_args=ext.LDFLAGS)
        lib.libraries = [name for name in lib.libraries if name != "torch_python"]  # an op library, no Python module
        lib.optional = True  # a failed build leaves no file behind to copy or package
        return lib

    class BuildKernels(BuildExtension.with_options(no_python_abi_suffix=True)):
        """Builds the libraries it can and warns about the rest, which padbench builds on first use."""

        def run(self):
            super().run()
            if self.inplace:  # an editable install: drop libraries of earlier sources or torch builds
                current = {Path(self.get_ext_filename(self.get_ext_fullname(e.name))).name for e in self.extensions}
                for stale in (ROOT / "padbench/kernels").glob("_cpu_*.so"):
                    if stale.name not in current:
                        stale.unlink()

        def build_extensions(self):
            try:
                super().build_extensions()
            except Exception as exc:  # before any library: no compiler, a broken toolchain
                _warn(f"the C++ kernels were not built ({str(exc).strip()[:300]}); padbench builds them on first use")

        def build_extension(self, extension):
            try:
                super().build_extension(extension)
            except Exception as exc:
                _warn(f"{extension.name} was not built ({str(exc).strip()[:300]}); padbench builds it on first use")

    return {"ext_modules": [library(cap) for cap in ext.CAPABILITIES], "cmdclass": {"build_ext": BuildKernels}}


setup(**_kernels())
