"""The report with results of two machines: one page, one part per device and mode, shared cases side by side."""

from __future__ import annotations

import json
import re

import pytest
from pages import check_page, serve_dir
from test_report import asv_result_file, rec

from padbench import report, results
from padbench.report.machines import side_by_side


def machine_run(path, host, records):
    env = {"git_commit": "abc", "torch_version": "2.13.0", "device": "cpu", "device_name": host,
           "cpu_model": f"{host} cpu", "threads": 2, "hostname": host, "python": "3.11"}
    doc = results.new_document(env, {"quick": True})
    doc["records"] = records
    return results.write(path, doc)


def two_machines(root):
    """box-a: padded 1000, loop 2000 tokens/s; box-b: faster, but its `packed` is wrong and `loop` unchecked."""
    both = [(m, d) for m in ("inference", "training") for d in ("uniform", "lognormal")]
    a = [rec(s, d, tps=t, mode=m) for m, d in both for s, t in (("padded", 1000), ("loop", 2000), ("packed", 2500))]
    b = [rec(s, d, tps=t, mode=m) for m, d in both for s, t in (("padded", 1500), ("loop", 3000))]
    b += [rec("packed", d, tps=9000, mode=m, err=0.5) for m, d in both]  # fastest of all, and wrong
    b = [r | {"max_rel_err": None} if r["strategy"] == "loop" and r["distribution"] == "uniform" else r for r in b]
    machine_run(root / "padbench" / "box-a.pbjson", "box-a", a)
    machine_run(root / "padbench" / "box-b.pbjson", "box-b", b)
    asv_result_file(root, machine="asv-box-1")
    faster = asv_result_file(root, machine="asv-box-2")  # 1.5x box-1, but its `loop` is wrong
    doc = json.loads(faster.read_text())
    tps, err = (doc["results"][f"encoders.InferenceMetrics.track_{m}"] for m in ("tokens_per_s", "max_rel_err"))
    tps[0] = [v * 1.5 for v in tps[0]]
    err[0] = [0.5 if 4 <= i < 8 and v == v else v for i, v in enumerate(err[0])]  # the grid: padded x 4, loop x 4
    faster.write_text(json.dumps(doc))
    return root


def test_side_by_side_never_lets_an_unverified_number_win(tmp_path):
    df = report.add_judgement(report.latest_runs(report.load([two_machines(tmp_path / "results")])))
    cpu = df[(df["device"] == "cpu") & (df["mode"] == "inference")]
    table, runs = side_by_side(cpu)
    assert {"padbench run box-a.pbjson", "padbench run box-b.pbjson"} <= set(runs)
    pb = table[table["d_model"] == "256"].set_index(["distribution", "strategy"])
    assert pb.loc[("lognormal", "packed"), "fastest"] == "padbench run box-a.pbjson"  # box-b's 9000 is wrong
    assert pb.loc[("lognormal", "loop"), "fastest"] == "padbench run box-b.pbjson"
    assert pb.loc[("uniform", "loop"), "fastest"] == "padbench run box-a.pbjson"  # box-b's was not checked
    asv = table[table["d_model"] == ""]
    assert len(asv) == 4
    assert set(zip(asv["strategy"], asv["fastest"])) == {("padded", "asv asv-box-2 @ 01234567"),
                                                         ("loop", "asv asv-box-1 @ 01234567")}


def test_one_page_one_part_per_device_and_mode(tmp_path):
    index = report.build_report([two_machines(tmp_path / "results")], tmp_path / "out")
    page = index.read_text()
    parts = re.findall(r'<div class="group" id="([^"]+)"><h2>([^<]+)</h2>', page)
    assert [t for _, t in parts] == ["CPU · inference", "CPU · training"]
    inference = page[page.index('id="cpu-inference"'):page.index('id="cpu-training"')]
    for run in ("padbench run box-a.pbjson", "padbench run box-b.pbjson", "asv asv-box-1", "asv asv-box-2"):
        assert run in inference
    assert inference.count("Machines side by side") == 1
    assert "9,000 <span class=\"tag\">unverified</span>" in inference
    assert 'title="forward error not measured"' in inference
    assert inference.count("<section") == 4 and len(re.findall(r"<img ", inference)) == 4


def test_two_machine_page_loads_in_a_browser(driver, tmp_path):
    out = tmp_path / "out"
    report.build_report([two_machines(tmp_path / "results")], out)
    ready = "document.images.length > 0 && Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
    with serve_dir(out) as url:
        page = check_page(driver, url, ready=ready)
        assert not page.problems, page.problems
        n_sec = driver.execute_script("return document.querySelectorAll('section').length")
        n_unverified = driver.execute_script("return document.querySelectorAll('td.unverified').length")
    assert n_sec == 6 and n_unverified >= 4  # inference: 2 padbench + 2 asv machines; training: padbench only


@pytest.fixture(autouse=True)
def _no_stray_results(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
