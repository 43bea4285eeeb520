"""Facts about the machine and the code a result was measured with."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

try:
    import psutil
except ImportError:  # not on every bare GPU image; os and sysconf give the same two facts
    psutil = None

from . import __version__


def git_commit() -> str | None:
    """The padbench checkout's commit (None when installed without git)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return cpu_model()


def cpu_attention() -> str:
    """Which code padbench's CPU attention runs here (its C++ kernel, or the fallback and why)."""
    from .kernels import cpu_implementation

    return cpu_implementation(torch.float32)


def cpu_dense_layers() -> str:
    """Which code runs packed tokens' dense layers at CPU inference here (C++ layers, or torch ops and why)."""
    from .layers import cpu_dense_layers as which

    return which()


def memory_bytes() -> int | None:
    """Total physical memory."""
    if psutil is not None:
        return psutil.virtual_memory().total
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def environment(device: str = "cpu") -> dict:
    return {
        "padbench_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "device": device,
        "device_name": device_name(device),
        "cpu_model": cpu_model(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "cuda_version": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_attention": cpu_attention() if device == "cpu" else None,
        "cpu_dense_layers": cpu_dense_layers() if device == "cpu" else None,
    }
