"""The C++ CPU kernels are built at install and loaded without a compiler; the fallback is keyed and named."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from padbench import layers
from padbench.environment import environment
from padbench.kernels import cpu_extension

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, **kw)


def test_installed_library_loads_in_a_fresh_process_without_a_compiler():
    path, why = cpu_extension._installed(cpu_extension.capability())
    assert path is not None, f"{why}: reinstall (pip install --no-deps --no-build-isolation -e .)"
    out = _run(
        "import json, time, torch.utils.cpp_extension as ce\n"
        "def refuse(*a, **k): raise AssertionError('the compiler was invoked')\n"
        "ce.load = refuse\n"
        "from padbench.kernels import cpu_extension\n"
        "t = time.perf_counter(); ok, what = cpu_extension.load()\n"
        "print(json.dumps([ok, what, time.perf_counter() - t]))\n"
    )
    assert out.returncode == 0, out.stderr
    ok, what, seconds = json.loads(out.stdout.splitlines()[-1])
    assert ok and what.endswith("installed build)"), what
    assert seconds < 3.0


def test_fallback_build_name_follows_sources_flags_and_torch(tmp_path, monkeypatch):
    copies = []
    for src in (*cpu_extension.SOURCES, *cpu_extension._HEADERS):
        copies.append(tmp_path / src.name)
        shutil.copy(src, copies[-1])
    monkeypatch.setattr(cpu_extension, "SOURCES", tuple(copies[:2]))
    monkeypatch.setattr(cpu_extension, "_HEADERS", tuple(copies[2:]))
    key = cpu_extension.build_key("AVX2")
    assert key == cpu_extension.build_key("AVX2") and key in cpu_extension.library_name("AVX2")
    assert cpu_extension.build_key("AVX512") != key  # other flags
    copies[-1].write_text(copies[-1].read_text() + "\n// edited\n")
    edited = cpu_extension.build_key("AVX2")
    assert edited != key
    monkeypatch.setattr(torch, "__version__", "0.0.0+other")
    assert cpu_extension.build_key("AVX2") not in (key, edited)


def test_environment_names_the_route(monkeypatch):
    ok, what = cpu_extension.load()
    assert ok, what
    route = cpu_extension.route()
    assert route in what and route in layers.cpu_dense_layers()
    assert environment("cpu")["cpu_attention"] == what and environment("cpu")["cpu_dense_layers"].endswith(f"({route})")
    # Without an installed library the just-in-time route runs, or neither: each says so.
    monkeypatch.setattr(cpu_extension, "_installed",
                        lambda cap: (None, f"padbench was installed without its {cap} library"))
    monkeypatch.setattr(cpu_extension, "_jit_sources", lambda name: [])
    monkeypatch.setattr(cpu_extension, "_build", lambda *a: None)  # the ops registered above stand in for the build
    ok, note = cpu_extension._load.__wrapped__()
    assert ok and note.startswith(f"{cpu_extension.capability()}, just-in-time build: padbench was installed without")
    monkeypatch.setattr(cpu_extension, "_build", lambda *a: "padbench's C++ CPU kernel could not be built: no c++")
    ok, note = cpu_extension._load.__wrapped__()
    assert not ok and note == (f"padbench's C++ CPU kernel could not be built: no c++; "
                               f"and padbench was installed without its {cpu_extension.capability()} library")


@pytest.mark.parametrize("compiler", ["missing", "failing"])
def test_install_without_a_working_compiler_succeeds_without_the_libraries(tmp_path, compiler):
    cxx = tmp_path / "c++"  # missing: answers nothing; failing: gives its version, then fails every compile
    version = '[ "$1" = --version ] && exec c++ --version\n' if compiler == "failing" else ""
    cxx.write_text("#!/bin/sh\n" + version + "exit 1\n")
    cxx.chmod(0o755)
    env = {**os.environ, "CC": str(cxx), "CXX": str(cxx)}
    out = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
                          "--build-temp", str(tmp_path / "tmp")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "WARNING: padbench:" in out.stderr and "on first use" in out.stderr
    assert not list((tmp_path / "lib").rglob("*.so"))
