"""padbench.sweep: isolated cases (crash, abort, hang, SIGKILL), resume after SIGKILL, shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sweep_plugin  # noqa: F401  (registers crash_segv, crash_abort, hang, killed in this process)
import torch

from padbench import runner, sweep, worker
from padbench.cli import main
from padbench.model import EncoderSpec

TESTS = Path(__file__).resolve().parent
TINY = ["--d-model", "32", "--nhead", "4", "--ff", "64", "--layers", "1", "--batch-size", "4", "--max-len", "16",
        "--quick", "--no-progress", "--no-memory"]


@pytest.fixture
def plugin_env(monkeypatch):
    """Workers import the failing strategies too."""
    monkeypatch.setenv("PADBENCH_PLUGINS", "sweep_plugin")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))


def test_isolated_sweep_records_a_crash_an_abort_a_hang_and_a_kill(plugin_env, tmp_path, capsys):
    out = tmp_path / "r.pbjson"
    t0 = time.monotonic()
    code = main(["run", *TINY, "--strategies", "padded,crash_segv,crash_abort,hang,killed", "--dists", "uniform",
                 "--mode", "inference", "--isolate", "--case-timeout", "30", "--out", str(out)])
    took = time.monotonic() - t0
    assert code == 0, capsys.readouterr().err
    recs = {r["strategy"]: r for r in json.loads(out.read_text())["records"]}
    assert recs["padded"]["status"] == "ok" and recs["padded"]["tokens_per_s"] > 0
    assert recs["crash_segv"]["status"] == "crashed" and "SIGSEGV" in recs["crash_segv"]["message"]
    assert "string_at" in recs["crash_segv"]["message"]  # faulthandler's innermost frame
    assert recs["crash_abort"]["status"] == "crashed" and "SIGABRT" in recs["crash_abort"]["message"]
    assert recs["hang"]["status"] == "timeout" and "30 s" in recs["hang"]["message"]
    assert recs["killed"]["status"] in ("oom", "crashed") and "SIGKILL" in recs["killed"]["message"]
    for r in recs.values():  # a failed case is still a full record of its case
        assert r["repro"].startswith("padbench run --strategies ") and r["num_tokens"] > 0
    assert took < 30 + 60  # the hang cost its time limit, not an hour
    assert "crashed" in capsys.readouterr().out


@pytest.mark.parametrize("rc, stderr, before, after, status, words", [
    (-9, "", (0, True), (1, True), "oom", "OOM killer"),
    (-9, "", (0, True), (0, True), "crashed", "SIGKILL"),
    (-9, "", None, None, "oom", "most likely"),
    (-11, "Fatal Python error: Segmentation fault\n\nCurrent thread 0x1 (most recent call first):\n"
          '  File "/x/ext.py", line 3 in f\n  File "/x/main.py", line 9 in <module>\n', None, None, "crashed",
     'Segmentation fault File "/x/ext.py", line 3 in f'),
    (1, "Traceback...\nRuntimeError: CUDA out of memory. Tried to allocate 2 GiB\n", None, None, "oom", "CUDA out"),
    (1, "ImportError: no module named x\n", None, None, "crashed", "exited with 1 and no record"),
])
def test_how_a_worker_ended(rc, stderr, before, after, status, words):
    got = worker.exit_status(rc, stderr, before, after)
    assert got["status"] == status and words in got["message"]


def _cases(n_dists=2):
    spec = EncoderSpec(32, 4, 64, 1)
    dists = ["uniform", "lognormal", "constant"][:n_dists]
    return runner.sweep_cases(["padded", "loop", "bucketed"], dists, ["inference", "training"], batch_size=4,
                              max_len=16, spec=spec)


def test_shards_partition_the_cases():
    cases = _cases(3)
    for n in (1, 2, 4, 5, 18, 40):
        shards = [sweep.shard(cases, k, n) for k in range(n)]
        assert sorted((c for s in shards for c in s), key=cases.index) == cases
        assert sum(map(len, shards)) == len(cases)
        assert shards == [sweep.shard(_cases(3), k, n) for k in range(n)]  # the same on every machine
    assert max(map(len, (sweep.shard(cases, k, 4) for k in range(4)))) - min(
        map(len, (sweep.shard(cases, k, 4) for k in range(4)))) <= 1


def test_shard_option(tmp_path, capsys):
    outs = []
    for k in range(3):
        out = tmp_path / f"s{k}.pbjson"
        assert main(["run", *TINY, "--strategies", "padded,loop", "--dists", "uniform", "--mode", "both",
                     "--shard", f"{k}/3", "--out", str(out)]) == 0
        outs.append(json.loads(out.read_text()))
    got = [(r["strategy"], r["mode"]) for d in outs for r in d["records"]]
    assert sorted(got) == sorted((s, m) for s in ("padded", "loop") for m in ("inference", "training"))
    assert outs[0]["config"]["shard"] == [0, 3] and outs[0]["config"]["cases_in_sweep"] == 4
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["run", "--shard", "3/3"])
    assert "need 0 <= K < N" in capsys.readouterr().err


def test_resume_after_sigkill_measures_only_the_missing_cases(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.pbjson"
    argv = ["run", *TINY, "--threads", str(torch.get_num_threads()), "--strategies", "padded,loop,bucketed",
            "--dists", "uniform,lognormal", "--mode", "both"]
    proc = subprocess.Popen([sys.executable, "-m", "padbench", *argv, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and len(json.loads(out.read_text())["records"]) >= 2:  # valid at every moment
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the sweep ended before it could be killed"
    before = json.loads(out.read_text())["records"]
    assert 2 <= len(before) < 12

    measured = []
    real = sweep.measure_case

    def counting(case, **kw):
        measured.append(case)
        return real(case, **kw)

    monkeypatch.setattr(sweep, "measure_case", counting)
    assert main([*argv, "--resume", str(out)]) == 0
    assert f"{12 - len(before)} of 12 cases run now, {len(before)} kept" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert len(measured) == 12 - len(before)
    assert doc["records"][:len(before)] == before  # kept as they were
    assert len({r["repro"] for r in doc["records"]}) == 12 and len(doc["resumed"]) == 1
    measured.clear()
    assert main([*argv, "--resume", str(out)]) == 0 and measured == []  # nothing left to do


def test_resume_refuses_another_device_and_out(tmp_path, capsys):
    doc = sweep.open_document(tmp_path / "none.pbjson", {"device": "cpu"}, {}, resume=True)
    assert doc["records"] == [] and "resumed" not in doc  # a missing file starts the sweep
    path = tmp_path / "gpu.pbjson"
    from padbench import results

    results.write(path, results.new_document({"device": "cuda"}, {}))
    with pytest.raises(Exception, match="holds a sweep on cuda"):
        sweep.open_document(path, {"device": "cpu"}, {}, resume=True)
    assert main(["run", *TINY, "--resume", str(path), "--out", str(tmp_path / "x.pbjson")]) == 2
    assert "leave out --out" in capsys.readouterr().err


def test_bad_lengths_fail_before_a_results_file_exists(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "long.txt").write_text("12\n40\n")
    assert main(["run", *TINY, "--dists", "file:long.txt", "--max-len", "16"]) == 2
    assert "over max_len 16" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
