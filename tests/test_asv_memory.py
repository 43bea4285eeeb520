"""One meaning of peak memory: the asv suite's track_peak_mem_bytes is `padbench run`'s peak_mem_bytes."""

from __future__ import annotations

import pytest
from test_report import asv_result_file, rec, write_run

from padbench import report, runner
from padbench.model import EncoderSpec

common = pytest.importorskip("benchmarks.common")
encoders = pytest.importorskip("benchmarks.encoders")


def test_suite_tracks_the_metrics_peak_in_bytes():
    bench = encoders.InferenceMetrics()
    cache = {"cases": {("loop", "uniform", "cpu"): {"status": "ok", "peak_mem_bytes": 12345678},
                       ("padded", "uniform", "cpu"): {"status": "ok", "peak_mem_bytes": None}}}
    bench.setup(cache, "loop", "uniform", "cpu")
    assert bench.track_peak_mem_bytes(cache, "loop", "uniform", "cpu") == 12345678
    assert encoders.InferenceMetrics.track_peak_mem_bytes.unit == "bytes"
    assert encoders.TrainingMetrics.track_peak_mem_bytes.unit == "bytes"
    bench.setup(cache, "padded", "uniform", "cpu")
    with pytest.raises(NotImplementedError):  # not measured (PADBENCH_ASV_METRIC_MEMORY=0): a skip
        bench.track_peak_mem_bytes(cache, "padded", "uniform", "cpu")
    assert "peak_mem_bytes" in common.METRIC_FIELDS


def test_metrics_record_the_peak_padbench_run_records(monkeypatch):
    """measure_one is measure_case with memory: the same fresh-process probe as `padbench run`."""
    seen = {}
    real = runner.peak_memory

    def probe(case, **kw):
        seen["case"] = case
        return real(case, **kw)

    monkeypatch.setattr(runner, "peak_memory", probe)
    monkeypatch.setattr(common, "METRIC_MIN_TIME", 0.02)
    monkeypatch.setattr(common, "METRIC_MAX_TIME", 0.1)
    case = runner.Case("padded", "uniform", batch_size=4, max_len=16, spec=EncoderSpec(32, 4, 64, 1))
    rec_ = common.measure_one(runner, case)
    assert rec_["status"] == "ok", rec_["message"]
    assert seen["case"].strategy == "padded"
    assert rec_["peak_mem_bytes"] is None or rec_["peak_mem_bytes"] >= 0  # None where /proc is read-only


def test_report_labels_peak_memory_one_way(tmp_path):
    root = tmp_path / "results"
    asv_result_file(root)
    write_run(root / "padbench" / "r.pbjson", [rec("padded", tps=1000), rec("loop", tps=2000)])
    page = report.build_report([root], tmp_path / "out").read_text()
    asv_at, pb_at = page.index('<h3 class="run">asv testmachine'), page.index('<h3 class="run">padbench run r.pbjson')
    asv_part, pb_part = page[asv_at:pb_at], page[pb_at:]
    assert asv_part.count('<th class="">peak MiB</th>') == pb_part.count('<th class="">peak MiB</th>') == 1
    assert "process peak MiB" in asv_part and "peakmem_step" in asv_part
    assert "process peak MiB" not in pb_part
    assert page.count("above what was resident before it") >= 2
