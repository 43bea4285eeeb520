import json

import pytest

from padbench import results
from padbench.cli import main

TINY = ["--d-model", "32", "--nhead", "4", "--ff", "64", "--layers", "1", "--batch-size", "4", "--max-len", "16",
        "--quick", "--no-progress"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--device", "cuda"], "no CUDA GPU"),
        (["run", "--device", "tpu"], "unknown device"),
        (["run", "--strategies", "padded,bogus"], "unknown strategy 'bogus'"),
        (["run", "--dists", "gauss"], "unknown distribution 'gauss'"),
        (["run", "--dists", "file:/nonexistent/lens.txt"], "lengths file not found"),
        (["run", "--d-model", "30", "--nhead", "4"], "not divisible by nhead"),
        (["run", "--mode", "serving"], "unknown mode"),
        (["run", "--dtype", "int4"], "unsupported dtype"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_lengths_file_errors(capsys, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("12\nseven\n")
    code, _, err = run_cli(capsys, "run", "--dists", f"file:{bad}")
    assert code == 2 and "not an integer" in err
    long = tmp_path / "long.txt"
    long.write_text("12\n40\n")
    code, _, err = run_cli(capsys, "run", "--dists", f"file:{long}", "--max-len", "16")
    assert code == 2 and "over max_len 16" in err


def test_negative_or_zero_sizes_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--batch-size", "0"])
    assert exc.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err


def test_run_writes_results_and_table(capsys, tmp_path):
    out = tmp_path / "r.pbjson"
    code, stdout, _ = run_cli(capsys, "run", *TINY, "--strategies", "padded,loop,varlen_attn", "--dists", "uniform",
                              "--mode", "both", "--out", str(out))
    assert code == 0
    assert "vs padded" in stdout and "loop" in stdout
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == results.SCHEMA_VERSION
    env = doc["environment"]
    for key in ("padbench_version", "git_commit", "torch_version", "device_name", "cpu_model", "threads"):
        assert key in env
    df = results.load(out)
    assert len(df) == 6
    ok = df[df.status == "ok"]
    assert set(ok.strategy) == {"padded", "loop"}
    assert (ok.tokens_per_s > 0).all() and (ok.efficiency > 0).all() and (ok.peak_mem_bytes > 0).all()
    assert (ok.max_rel_err < 1e-4).all() and ok.pad_invariant.all() and ok.nan_free.all()
    assert (ok[ok["mode"] == "training"].grad_rel_err < 1e-3).all()
    assert (df[df.strategy == "varlen_attn"].status == "unsupported").all()


def test_interrupted_run_keeps_measured_cases(capsys, tmp_path, monkeypatch):
    import padbench.sweep as cli  # the loop of `padbench run` lives in the library's sweep

    real = cli.measure_case
    calls = []

    def interrupting(case, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(case)
        return real(case, **kw)

    monkeypatch.setattr(cli, "measure_case", interrupting)
    out = tmp_path / "r.pbjson"
    code, stdout, err = run_cli(capsys, "run", *TINY, "--no-memory", "--strategies", "padded,loop,bucketed",
                                "--dists", "uniform", "--mode", "inference", "--out", str(out))
    assert code == 130 and "interrupted" in err
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and len(doc["records"]) == 2


def test_oom_is_recorded_and_sweep_continues(capsys, tmp_path, monkeypatch):
    import torch

    from padbench.strategies.loop import Loop

    def boom(self, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Loop, "__call__", boom)
    out = tmp_path / "r.pbjson"
    code, _, _ = run_cli(capsys, "run", *TINY, "--no-memory", "--strategies", "padded,loop", "--dists", "uniform",
                         "--mode", "inference", "--out", str(out))
    assert code == 0
    df = results.load(out)
    assert df.set_index("strategy").loc["loop", "status"] == "oom"
    assert df.set_index("strategy").loc["padded", "status"] == "ok"


def test_list(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "nested_fastpath" in out and "file:PATH" in out


def test_results_are_atomic_and_strict(tmp_path):
    p = tmp_path / "x.pbjson"
    results.write(p, results.new_document({"device": "cpu"}, {}) | {"records": [{"a": float("nan")}]})
    assert json.loads(p.read_text())["records"][0]["a"] is None
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]
    (tmp_path / "bad.pbjson").write_text("{not json")
    from padbench.errors import PadbenchError

    with pytest.raises(PadbenchError, match="not valid JSON"):
        results.load(tmp_path / "bad.pbjson")


def test_cpu_allocation_failure_is_recorded_as_oom(capsys, tmp_path, monkeypatch):
    """torch's CPU allocator raises a RuntimeError, not an OutOfMemoryError: it is still an oom."""
    import torch

    from padbench.strategies.loop import Loop

    def real_cpu_failure(self, batch):
        return torch.empty(2**42, dtype=torch.uint8)  # 4 TiB: DefaultCPUAllocator: can't allocate memory

    monkeypatch.setattr(Loop, "__call__", real_cpu_failure)
    out = tmp_path / "r.pbjson"
    code, _, _ = run_cli(capsys, "run", *TINY, "--no-memory", "--strategies", "padded,loop", "--dists", "uniform",
                         "--mode", "inference", "--out", str(out))
    assert code == 0
    rec = results.load(out).set_index("strategy").loc["loop"]
    assert rec["status"] == "oom" and "can't allocate memory" in rec["message"]


def test_run_where_no_case_succeeds_prints_the_failures_and_exits_1(capsys, tmp_path, monkeypatch):
    import torch

    from padbench.strategies.loop import Loop
    from padbench.strategies.padded import Padded

    def too_big(self, batch):
        return torch.empty(2**42, dtype=torch.uint8)

    monkeypatch.setattr(Loop, "__call__", too_big)
    monkeypatch.setattr(Padded, "__call__", too_big)
    out = tmp_path / "r.pbjson"
    code, stdout, err = run_cli(capsys, "run", *TINY, "--no-memory", "--strategies", "padded,loop",
                                "--dists", "uniform", "--mode", "inference", "--out", str(out))
    assert code == 1
    assert "Traceback" not in err and "no case could be measured" in err
    assert stdout.count("oom") == 2  # both failed cases are in the table
    assert len(results.load(out)) == 2
