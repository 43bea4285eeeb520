"""padbench.report and padbench.asv_results on synthetic results (no timing runs)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from padbench import asv_results, report, results, table
from padbench.cli import main as cli_main
from padbench.report import dashboard


def rec(strategy, dist="lognormal", *, tps, mode="inference", device="cpu", err=1e-7, grad=None,
        pad_invariant=True, nan_free=True, status="ok", padding=0.45, mem=100 * 2**20):
    return {
        "strategy": strategy, "distribution": dist, "device": device, "mode": mode, "batch_size": 32,
        "max_len": 256, "padding_ratio": padding, "num_tokens": 4000, "status": status, "message": "",
        "time_s": 4000 / tps if tps else None, "time_spread": 0.01, "tokens_per_s": tps,
        "padded_tokens_per_s": None, "useful_flops": 1e9, "efficiency": 0.1, "matmul_flops": 1e11,
        "peak_mem_bytes": mem, "max_abs_err": err, "max_rel_err": err,
        "grad_rel_err": grad if grad is not None else (1e-6 if mode == "training" else None),
        "pad_invariant": pad_invariant, "nan_free": nan_free, "fastpath_taken": None, "dtype": "float32",
        "d_model": 256, "nhead": 4, "dim_feedforward": 1024, "num_layers": 2, "seed": 0,
    }


def judged(rows, run="r"):
    df = pd.DataFrame(rows)
    df["run"] = run
    for col in ("speedup",):
        df[col] = None
    return report.add_judgement(df)


def test_verdict_picks_fastest_equivalent_and_states_speedup():
    df = judged([rec("padded", tps=1000), rec("loop", tps=2500), rec("bucketed", tps=1500)])
    (v,) = report.verdicts(df, "cpu", "inference")
    assert v.winner == "loop"
    assert v.speedup == pytest.approx(2.5)
    assert "2.50×" in v.text and "lognormal" in v.text and "CPU inference" in v.text


@pytest.mark.parametrize("broken", [
    {"err": 3e-2},                 # wrong forward
    {"pad_invariant": False},      # pads leak
    {"nan_free": False},           # NaN with an empty sequence
])
def test_non_equivalent_strategy_never_wins(broken):
    df = judged([rec("padded", tps=1000), rec("jagged", tps=9000, **broken), rec("loop", tps=1200)])
    (v,) = report.verdicts(df, "cpu", "inference")
    assert v.winner == "loop"
    assert "jagged" in v.text  # named as excluded
    assert "not counted" in v.text
    row = df[df.strategy == "jagged"].iloc[0]
    assert not row["equivalent"] and row["why_not"]


def test_training_gradient_error_excludes():
    df = judged([rec("padded", tps=500, mode="training"), rec("packed", tps=2000, mode="training", grad=0.5),
                 rec("loop", tps=600, mode="training")])
    (v,) = report.verdicts(df, "cpu", "training")
    assert v.winner == "loop"
    assert v.speedup == pytest.approx(1.2)


def test_missing_measurements_do_not_count():
    df = judged([rec("padded", tps=1000), rec("flex", tps=5000, err=None)])
    assert not df[df.strategy == "flex"]["equivalent"].iloc[0]
    (v,) = report.verdicts(df, "cpu", "inference")
    assert v.winner == "padded"
    assert "keep it" in v.text


def test_padded_slowest_equivalent_and_no_equivalent_at_all():
    df = judged([rec("padded", tps=1000, err=1.0), rec("loop", tps=800, err=1.0)])
    (v,) = report.verdicts(df, "cpu", "inference")
    assert v.winner is None and "nothing to recommend" in v.text


def test_unsupported_rows_are_ignored_and_verdict_per_distribution():
    df = judged([rec("padded", "uniform", tps=1000, padding=0.3), rec("loop", "uniform", tps=900, padding=0.3),
                 rec("padded", "lognormal", tps=800), rec("loop", "lognormal", tps=1600),
                 rec("varlen_attn", "lognormal", tps=None, status="unsupported", err=None)])
    vs = {v.distribution: v for v in report.verdicts(df, "cpu", "inference")}
    assert vs["uniform"].winner == "padded"
    assert vs["lognormal"].winner == "loop" and vs["lognormal"].speedup == pytest.approx(2.0)


def test_speedup_only_within_the_same_run():
    df = judged([rec("padded", tps=1000), rec("loop", tps=2000)], run="a")
    other = judged([rec("loop", tps=4000)], run="b")
    both = report.add_judgement(pd.concat([df, other], ignore_index=True))
    assert both[(both.run == "a") & (both.strategy == "loop")]["speedup"].iloc[0] == pytest.approx(2.0)
    assert pd.isna(both[(both.run == "b") & (both.strategy == "loop")]["speedup"].iloc[0])


def test_bf16_judged_by_its_own_tolerance_in_report_and_run_table():
    """A bf16 forward error of 1e-2 is within bf16's tolerance: equivalent in both faces alike."""
    rows = [dict(rec("padded", tps=1000, err=1e-2), dtype="bfloat16"),
            dict(rec("packed", tps=2000, err=1e-2), dtype="bfloat16")]
    df = judged(rows)
    assert df["equivalent"].all(), df["why_not"].tolist()
    (v,) = report.verdicts(df, "cpu", "inference")
    assert v.winner == "packed" and v.speedup == pytest.approx(2.0)
    printed = table.comparison(pd.DataFrame(rows))
    assert (printed["equiv"] == "yes").all()
    assert printed.set_index("strategy").loc["packed", "vs padded"] == pytest.approx(2.0)
    # the same error in float32 is not equivalent, in both
    f32 = [dict(r, dtype="float32") for r in rows]
    assert not judged(f32)["equivalent"].any()
    assert (table.comparison(pd.DataFrame(f32))["equiv"] == "NO").all()


def write_run(path: Path, records, device="cpu", created=None):
    doc = results.new_document({"git_commit": "abc", "torch_version": "2.13.0", "device": device,
                                "device_name": "test cpu", "cpu_model": "test cpu", "threads": 2,
                                "hostname": "testhost", "python": "3.11"}, {"quick": True})
    if created:
        doc["created"] = created
    doc["records"] = records
    results.write(path, doc)
    return path


def test_build_report_writes_page_with_one_loaded_plot_per_device_and_mode(tmp_path):
    rows = [rec("padded", d, tps=1000, padding=p, mode=m) for d, p in (("uniform", 0.3), ("lognormal", 0.6))
            for m in ("inference", "training")]
    rows += [rec("loop", d, tps=1800, padding=p, mode=m) for d, p in (("uniform", 0.3), ("lognormal", 0.6))
             for m in ("inference", "training")]
    rows += [rec("jagged", "lognormal", tps=5000, padding=0.6, err=0.2)]
    write_run(tmp_path / "results" / "padbench" / "run1.pbjson", rows)
    index = report.build_report([tmp_path / "results"], tmp_path / "out")
    page = index.read_text()
    imgs = re.findall(r'<img[^>]+src="([^"]+)"', page)
    assert len(imgs) == 2  # cpu inference, cpu training
    for src in imgs:
        png = index.parent / src
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1.80×" in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    assert "<script" not in page


def test_build_report_latest_run_per_origin(tmp_path):
    write_run(tmp_path / "a.pbjson", [rec("padded", tps=1000), rec("loop", tps=1100)],
              created="2026-01-01T00:00:00+00:00")
    write_run(tmp_path / "b.pbjson", [rec("padded", tps=1000), rec("loop", tps=3000)],
              created="2026-02-01T00:00:00+00:00")
    page = report.build_report([tmp_path], tmp_path / "out").read_text()
    assert "3.00×" in page and "1.10×" not in page
    page = report.build_report([tmp_path], tmp_path / "out2", all_runs=True).read_text()
    assert "3.00×" in page and "1.10×" in page


def test_report_cli(tmp_path, capsys):
    write_run(tmp_path / "a.pbjson", [rec("padded", tps=1000), rec("loop", tps=2000)])
    assert cli_main(["report", str(tmp_path / "a.pbjson"), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "index.html").exists()
    assert cli_main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such results" in capsys.readouterr().err


# ------------------------------------------------------------------ asv results
def asv_result_file(root: Path, machine="testmachine", commit="0123456789abcdef0123", date=1_700_000_000_000):
    strategies, dists, devices = ["padded", "loop", "varlen_attn"], ["uniform", "lognormal"], ["cpu", "cuda"]
    params = [[repr(s) for s in strategies], [repr(d) for d in dists], [repr(d) for d in devices]]
    nan = float("nan")

    def grid(fn):
        return [fn(s, d, dev) for s in strategies for d in dists for dev in devices]

    def val(s, d, dev, v):
        return v if dev == "cpu" and s != "varlen_attn" else nan

    t = {"padded": 0.2, "loop": 0.1}
    res = {
        "encoders.Inference.time_step": [grid(lambda s, d, dev: val(s, d, dev, t.get(s))), params, "v", 0, 1.0,
                                         grid(lambda *a: None), grid(lambda *a: None),
                                         grid(lambda s, d, dev: val(s, d, dev, 0.9 * t.get(s, 1))),
                                         grid(lambda s, d, dev: val(s, d, dev, 1.1 * t.get(s, 1)))],
        "encoders.InferenceMemory.peakmem_step": [grid(lambda s, d, dev: val(s, d, dev, 300e6)), params, "v"],
        "encoders.InferenceMetrics.track_peak_mem_bytes": [
            grid(lambda s, d, dev: val(s, d, dev, 40e6 * t.get(s, 1) / 0.2)), params, "v"],
        "encoders.InferenceMetrics.track_tokens_per_s": [
            grid(lambda s, d, dev: val(s, d, dev, 4000 / t.get(s, 1))), params, "v"],
        "encoders.InferenceMetrics.track_speedup_vs_padded": [
            grid(lambda s, d, dev: val(s, d, dev, 0.2 / t.get(s, 1))), params, "v"],
        "encoders.InferenceMetrics.track_max_rel_err": [grid(lambda s, d, dev: val(s, d, dev, 1e-7)), params, "v"],
        "encoders.InferenceMetrics.track_pad_checks": [grid(lambda s, d, dev: val(s, d, dev, 1.0)), params, "v"],
        "encoders.Lengths.track_padding_ratio": [[0.3, 0.6], [params[1]], "v"],
        "encoders.Lengths.track_num_tokens": [[5000, 3000], [params[1]], "v"],
        "encoders.Lengths.track_batch_size": [[32, 32], [params[1]], "v"],
        "encoders.Lengths.track_max_len": [[256, 256], [params[1]], "v"],
        "encoders.NestedFastpath.track_fastpath_taken": [[nan] * 4, [params[1], params[2]], "v"],
    }
    doc = {"commit_hash": commit, "env_name": "existing-py_test", "date": date,
           "params": {"machine": machine, "python": "3.11", "cpu": "test cpu"}, "python": "3.11",
           "requirements": {"torch": "2.13.0"}, "env_vars": {},
           "result_columns": ["result", "params", "version", "started_at", "duration", "stats_ci_99_a",
                              "stats_ci_99_b", "stats_q_25", "stats_q_75", "stats_number", "stats_repeat",
                              "samples", "profile"],
           "results": res, "durations": {}, "version": 2}
    mdir = root / machine
    mdir.mkdir(parents=True, exist_ok=True)
    machine_info = {"machine": machine, "cpu": "test cpu", "num_cpu": "2", "version": 1}
    (mdir / "machine.json").write_text(json.dumps(machine_info))
    path = mdir / f"{commit[:8]}-existing-py_test.json"
    path.write_text(json.dumps(doc).replace("NaN", "NaN"))
    return path


def test_asv_results_load(tmp_path):
    asv_result_file(tmp_path)
    (tmp_path / "padbench").mkdir()  # padbench's own run files: not a machine folder
    (tmp_path / "benchmarks.json").write_text("{}")
    df = asv_results.load(tmp_path)
    ok = df[df.status == "ok"]
    assert set(ok.strategy) == {"padded", "loop"} and set(ok.device) == {"cpu"}
    row = ok[(ok.strategy == "loop") & (ok.distribution == "lognormal")].iloc[0]
    assert row.time_s == pytest.approx(0.1)
    assert row.time_spread == pytest.approx(0.2)
    assert row.speedup == pytest.approx(2.0)
    assert row.padding_ratio == pytest.approx(0.6) and row.batch_size == 32 and row.max_len == 256
    assert row.peak_mem_bytes == pytest.approx(20e6)  # one batch above resident: padbench run's meaning
    assert row.process_peak_bytes == pytest.approx(300e6)  # asv's peakmem_: the whole process
    assert row.pad_invariant and row.nan_free
    assert row.env_git_commit.startswith("01234567") and row.env_machine == "testmachine"
    skipped = df[(df.strategy == "varlen_attn") & (df.device == "cpu")]
    assert (skipped.status == "unsupported").all()


def test_report_reads_asv_results(tmp_path):
    asv_result_file(tmp_path / "results")
    page = report.build_report([tmp_path / "results"], tmp_path / "out").read_text()
    assert "asv testmachine @ 01234567" in page
    assert "2.00×" in page  # loop over padded, tracked by asv in one process
    assert len(re.findall(r"<img ", page)) == 1


def test_install_dashboard_offline_files(tmp_path):
    pytest.importorskip("asv_tachyon")
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text("<script src='https://code.jquery.com/jquery.js'></script>")
    params = {"machine": "m", "python": "3.11", "branch": "main"}
    (html / "index.json").write_text(json.dumps({
        "revision_to_hash": {"3": "a" * 40}, "benchmarks": {"encoders.Inference.time_step": {}},
        "graph_param_list": [params]}))
    index = report.install_dashboard(html)
    page = index.read_text()
    assert "https://" not in page and "assets/" in page
    for src in re.findall(r'(?:src|href)="\./([^"]+)"', page):
        assert (html / src).exists(), src
    assert (html / "index.legacy.html").exists()
    commits = json.loads((html / "commits.json").read_text())
    assert commits["by_revision"]["3"] and "a" * 40 in commits["by_hash"]
    graphs = list((html / "graphs").rglob("*.json"))
    samples = list((html / "samples").rglob("*.json"))
    assert len(graphs) == 1 and json.loads(graphs[0].read_text()) == []
    assert len(samples) == 1 and json.loads(samples[0].read_text()) == {}


def test_install_dashboard_needs_published_site(tmp_path):
    from padbench.errors import PadbenchError

    with pytest.raises(PadbenchError, match="asv publish"):
        report.install_dashboard(tmp_path)


def test_asv_repeatability(tmp_path):
    first = asv_result_file(tmp_path / "a")
    second_dir = tmp_path / "b"
    second = asv_result_file(second_dir)
    doc = json.loads(second.read_text())
    entry = doc["results"]["encoders.Inference.time_step"]
    values = entry[0]
    entry[0] = [v * 1.1 if isinstance(v, float) and not math.isnan(v) else v for v in values]
    second.write_text(json.dumps(doc))
    df = asv_results.repeatability(first, second)
    measured = [v for v in values if isinstance(v, float) and not math.isnan(v)]
    assert len(df) == len(measured)
    assert df.rel_diff.to_numpy() == pytest.approx(0.1)
    assert cli_main(["asv", "repeat", str(first), str(second)]) == 0


def test_asv_repeatability_missing_file_is_a_clear_error(tmp_path, capsys):
    assert cli_main(["asv", "repeat", str(tmp_path / "nope.json"), str(tmp_path / "nope2.json")]) == 2
    assert "cannot read asv results" in capsys.readouterr().err


def test_dashboard_defaults_to_an_environment_asv_published():
    """`asv run -E existing` results have null requirements; the UI's default selection (the
    first value of each parameter) must still name one real environment."""
    existing = {"python": "/x/.venv/bin/python3", "torch": None, "numpy": None, "machine": "m"}
    built = {"python": "3.11", "torch": "2.13.0", "numpy": "", "machine": "m"}
    index = {"graph_param_list": [existing, built],
             "params": {"python": ["/x/.venv/bin/python3", "3.11"], "torch": ["2.13.0", None],
                        "numpy": ["", None], "machine": ["m"]}}
    out = dashboard.default_to_a_real_environment(index)
    assert out["graph_param_list"][0] == built
    assert {k: v[0] for k, v in out["params"].items()} == built
    assert sorted(map(str, out["params"]["torch"])) == ["2.13.0", "None"]


def test_asv_suite_speedup_is_the_judges_ratio_and_matches_its_fallback(monkeypatch):
    """The suite's speedup comes from padbench.judge; old commits (no judge) get the same numbers."""
    import copy
    import sys

    common = pytest.importorskip("benchmarks.common")
    cases = {("padded", "uniform", "cpu"): {"status": "ok", "time_s": 0.2},
             ("loop", "uniform", "cpu"): {"status": "ok", "time_s": 0.1},
             ("flex", "uniform", "cpu"): {"status": "unsupported"},
             ("loop", "lognormal", "cpu"): {"status": "ok", "time_s": 0.1}}  # no padded here
    judged_cases = copy.deepcopy(cases)
    common.add_speedups(judged_cases)
    assert [r["speedup"] for r in judged_cases.values()] == [1.0, 2.0, None, None]
    import padbench

    monkeypatch.setitem(sys.modules, "padbench.judge", None)  # a commit before padbench.judge
    monkeypatch.delattr(padbench, "judge")
    with pytest.raises(ImportError):
        from padbench import judge  # noqa: F401
    old = copy.deepcopy(cases)
    common.add_speedups(old)
    assert old == judged_cases
