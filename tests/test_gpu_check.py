"""`make gpu-check DRY_RUN=1`: every step of the GPU check at toy sizes on CPU, into a temporary
folder (never results/), with a log, a summary and the exit status the GPU run would give."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _run(tmp: Path, **extra) -> tuple[subprocess.CompletedProcess, dict, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIMIT_", "RESULTS_DIR", "BUDGET_S"))}
    env.update(DRY_RUN="1", PYTHON=sys.executable, TMPDIR=str(tmp), **extra)
    proc = subprocess.run(["make", "-s", "gpu-check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout
    m = re.search(r"^results: (.+)$", out, re.M)
    assert m, f"no summary (rc {proc.returncode}):\n{out[-3000:]}\n{proc.stderr[-2000:]}"
    rows = {}
    header = list(re.finditer(r"^step +status +rc +seconds +limit +note$", out, re.M))[-1]
    table = out[header.end() :].strip().splitlines()
    for line in table:
        if line.startswith(("results:", "log:")):
            break
        step, status, *_ = line.split()
        rows[step] = status
    return proc, rows, Path(m.group(1))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("gpu_check"))


def test_every_step_runs_or_says_why_not(dry_run):
    proc, rows, _ = dry_run
    assert proc.returncode == 0, proc.stdout[-4000:]
    want = {"preflight": "ok", "install": "skipped", "pytest": "ok", "kernel": "ok", "run": "ok",
            "tune": "ok" if _have("triton") else "skipped"}
    if _have("asv"):
        want["asv:inference-step"] = "ok"
    else:
        want["asv"] = "skipped"
    assert rows == want


def test_results_land_in_a_temporary_folder_with_log_and_summary(dry_run, tmp_path_factory):
    proc, rows, results = dry_run
    assert results.is_relative_to(tmp_path_factory.getbasetemp())
    name = next((results / "gpu").iterdir()).name
    assert name.startswith("dryrun-")
    log = (results / "gpu" / name / "gpu-check.log").read_text()
    summary = (results / "gpu" / name / "summary.txt").read_text()
    assert summary in log
    for step in ("preflight", "pytest", "kernel", "run", "tune"):
        assert re.search(rf"^== {step}: start .*, limit \d+ s$", log, re.M), step
        assert re.search(rf"^== {step}: ok \(rc 0, [\d.]+ s, limit \d+ s\)", log, re.M), step
    assert re.search(r"\d+ skipped", log)  # pytest -m cuda collected the CUDA tests and skipped them here
    assert not list((results / "gpu").rglob("*.json"))  # asv would warn about a folder without machine.json


def test_each_step_wrote_its_records(dry_run):
    _, _, results = dry_run
    name = next((results / "gpu").iterdir()).name
    kernel = json.loads((results / "kernel" / f"{name}-bf16.json").read_text())
    status = {(r["method"], r["mode"]): r["status"] for r in kernel["records"]}
    assert status[("padbench", "forward")] == "ok" and status[("padbench", "backward")] == "ok"
    assert status[("varlen_attn", "forward")] == "unsupported"

    from padbench import results as pbresults

    df = pbresults.load(results / "padbench" / f"{name}-bf16-bert-base.pbjson")
    assert set(df["mode"]) == {"inference", "training"}
    assert (df[df["strategy"] == "packed"]["status"] == "ok").all()

    if _have("triton"):
        tune = json.loads((results / "kernel" / f"{name}-triton-tune.json").read_text())
        assert tune["interpreted"] and tune["fwd"]["chosen"] and tune["bwd"]["chosen"]
    if _have("asv"):
        machine = json.loads((results / name / "machine.json").read_text())
        assert machine["machine"] == name
        (asv_file,) = [p for p in (results / name).glob("*.json") if p.name != "machine.json"]
        assert "encoders.Inference.time_step" in json.loads(asv_file.read_text())["results"]


def test_a_step_out_of_time_fails_the_run_and_later_steps_still_report(tmp_path):
    proc, rows, _ = _run(tmp_path, LIMIT_PREFLIGHT_S="1")
    assert proc.returncode != 0 and "Error 1" in proc.stderr  # the script exits 1; make reports it
    assert rows["preflight"] == "no-time"
    assert rows["kernel"] == "skipped" and rows["run"] == "skipped"


def test_tqdm_stand_in_covers_what_padbench_calls():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tqdm_stub", ROOT / "scripts/gpu_check/stubs/tqdm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    bar = mod.tqdm([1, 2, 3], unit="case", file=sys.stderr, disable=False)
    seen = []
    for x in bar:
        bar.set_description(f"case {x}")
        seen.append(x)
    bar.close()
    with mod.tqdm(total=5, unit="step") as bar:
        bar.update(2)
        bar.set_postfix(best="packed")
    assert seen == [1, 2, 3]


def test_environment_without_psutil(monkeypatch):
    from padbench import environment

    want = environment.memory_bytes()
    monkeypatch.setattr(environment, "psutil", None)
    assert environment.memory_bytes() == want > 0
