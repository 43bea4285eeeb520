"""Preflight of scripts/gpu_check.sh: what this Python has, in the log and as shell facts.

    python preflight.py FACTS_FILE [--need-cuda]

Prints versions, the GPU and which of padbench's optional modules are missing (and what that
costs); writes `HAVE_<MODULE>=0|1` lines and the machine's asv name (`NAME=gpu-...`, from
padbench.asv_results) to FACTS_FILE for the script to source. Exits 1 when torch is missing, or
when --need-cuda is given and torch sees no CUDA device.
"""

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# module -> what padbench loses without it (None: required)
MODULES = {
    "torch": None,
    "numpy": None,
    "pandas": None,
    "triton": "the Triton kernels: packed attention on CUDA, pytest -m cuda and the tuning step fail",
    "pytest": "the pytest step is skipped",
    "asv": "the asv step needs a local wheel folder, else it is skipped",
    "tqdm": "padbench run's progress bar: a no-op stand-in (scripts/gpu_check/stubs) is used",
    "psutil": "none: padbench.environment falls back to os.cpu_count() and sysconf",
    "matplotlib": "padbench report's figures only (not run here)",
    "transformers": "Hugging Face models only (not run here)",
}


def machine_name() -> str:
    """asv's machine name for this machine (padbench imported from this tree), shell-safe."""
    sys.path.insert(0, ROOT)
    try:
        from padbench.asv_results import default_machine_name

        name = default_machine_name()
    except Exception as exc:  # noqa: BLE001 -- a name is still needed to file the log
        print(f"padbench does not import from {ROOT}: {type(exc).__name__}: {exc}")
        name = "unknown-machine"
    finally:
        sys.path.remove(ROOT)
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)


def main() -> int:
    facts_path = sys.argv[1]
    need_cuda = "--need-cuda" in sys.argv[2:]
    print(f"python {platform.python_version()} at {sys.executable}; {platform.platform()}")
    have = {}
    for name, cost in MODULES.items():
        have[name] = importlib.util.find_spec(name) is not None
        if name in ("torch", "triton") and have[name]:
            print(f"{name} {importlib.metadata.version(name)}")
        elif not have[name]:
            print(f"MISSING {name}: " + (cost or "required"))
    cuda = False
    if have["torch"]:
        import torch

        cuda = torch.cuda.is_available()
        print(f"torch CUDA build: {torch.version.cuda}; CUDA available: {cuda}")
        if cuda:
            props = torch.cuda.get_device_properties(0)
            print(f"GPU 0: {props.name}, {props.total_memory / 2**30:.1f} GiB, "
                  f"compute capability {props.major}.{props.minor}, {torch.cuda.device_count()} device(s)")
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv"], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr.strip())
    with open(facts_path, "w") as fh:
        for name, ok in have.items():
            fh.write(f"HAVE_{name.upper()}={int(ok)}\n")
        fh.write(f"HAVE_CUDA={int(cuda)}\n")
        fh.write(f"NAME={machine_name()}\n")
    if not have["torch"]:
        print("torch is missing: nothing can run")
        return 1
    if need_cuda and not cuda:
        print("torch sees no CUDA device: the CUDA steps are skipped")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
