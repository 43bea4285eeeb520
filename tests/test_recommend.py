"""`padbench recommend`: table, JSON, never recommending a non-equivalent strategy, from results, bad input."""

import json
import math
import time

import numpy as np
import pandas as pd
import pytest
import torch

from padbench import recommend
from padbench.cli import main
from padbench.model import EncoderSpec
from padbench.recommend import measuring, timing

TINY = ["--d-model", "32", "--nhead", "4", "--ff", "64", "--layers", "1", "--batch-size", "8"]
FAST = [*TINY, "--quick", "--no-progress", "--no-memory"]
STRATS = ["--strategies", "padded,packed,loop"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def lens_file(tmp_path_factory):
    """Lognormal-ish lengths, one integer per line (what a user would export)."""
    rng = np.random.default_rng(3)
    lens = np.clip(np.round(rng.lognormal(np.log(8), 0.7, 300)), 1, 40).astype(int)
    path = tmp_path_factory.mktemp("lens") / "lens.txt"
    path.write_text("# token counts\n" + "\n".join(map(str, lens)) + "\n")
    return path


def test_ranked_table_verdict_and_snippet(capsys, lens_file):
    code, out, err = run_cli(capsys, "recommend", "--lengths", str(lens_file), *FAST, *STRATS)
    assert code == 0, err
    assert "real tokens/s" in out and "vs padded" in out and "equivalent" in out
    for s in ("padded", "packed", "loop"):
        assert s in out
    verdict = [line for line in out.splitlines() if line.startswith("for your lengths (B=8, padding ratio ")]
    assert len(verdict) == 1
    assert "on cpu inference" in verdict[0]
    if "keep `padded`" not in verdict[0]:
        assert "how to use `" in out and "the tokens/s of padded, same results (max rel err" in verdict[0]


def test_json_shape_named_distribution_with_memory(capsys):
    code, out, err = run_cli(capsys, "recommend", "--dist", "uniform", "--max-len", "24", *TINY, "--quick",
                             "--no-progress", "--strategies", "padded,packed", "--json")
    assert code == 0, err
    doc = json.loads(out)  # stdout is one JSON document, nothing else
    assert doc["device"] == "cpu" and doc["mode"] == "inference"
    assert doc["draws"] == len(doc["batches"]) == 1 and {"seed", "padding_ratio", "max"} <= set(doc["batches"][0])
    assert {"count", "mean", "max", "padding_ratio"} <= set(doc["lengths"])
    assert doc["lengths"]["max"] <= 24 and 0 <= doc["lengths"]["padding_ratio"] < 1
    names = [e["strategy"] for e in doc["ranked"]]
    assert {"padded", "packed"} <= set(names)
    for e in doc["ranked"]:
        assert set(recommend.ENTRY_KEYS) <= set(e)
    base = next(e for e in doc["ranked"] if e["strategy"] == "padded")
    assert base["status"] == "ok" and base["equivalent"] is True
    assert math.isclose(base["speedup_vs_padded"], 1.0)
    assert base["tokens_per_s"] > 0 and base["efficiency"] > 0
    from padbench.measure import cpu_peak_supported

    if cpu_peak_supported():
        assert base["peak_mem_bytes"] > 0
    assert doc["recommended"] in names
    best = next(e for e in doc["ranked"] if e["strategy"] == doc["recommended"])
    assert best["equivalent"] is True and best["status"] == "ok"
    # the recommendation is the fastest equivalent measured strategy (by speedup over padded)
    measured = [e for e in doc["ranked"] if e["status"] == "ok" and e["equivalent"]]
    assert best["speedup_vs_padded"] == max(e["speedup_vs_padded"] for e in measured)
    assert best is next(e for e in doc["ranked"] if e["status"] == "ok")  # and ranked first among them
    assert f"`{doc['recommended']}`" in doc["verdict"]


def test_non_equivalent_strategy_is_never_recommended(capsys, lens_file, monkeypatch):
    """`packed` made the fastest by far but with a wrong result: `loop` (next fastest) wins."""
    real = measuring.measure_case

    def failing(case, **kw):
        rec = real(case, **kw)
        if case.strategy == "packed":
            rec["max_rel_err"] = 0.5
        return rec

    fake_time = {"packed": 0.001, "loop": 0.01, "padded": 0.02}
    monkeypatch.setattr(measuring, "SCREEN_SKIP_MIN_S", 1e9)  # real first batches decide nothing here
    monkeypatch.setattr(measuring, "measure_case", failing)
    monkeypatch.setattr(timing, "time_block", lambda prepared, batches: fake_time[prepared.case.strategy])
    code, out, err = run_cli(capsys, "recommend", "--lengths", str(lens_file), *FAST, *STRATS, "--json")
    assert code == 0, err
    doc = json.loads(out)
    ranked = {e["strategy"]: e for e in doc["ranked"]}
    assert doc["ranked"][0]["strategy"] == "packed"  # fastest, ranked first ...
    assert ranked["packed"]["equivalent"] is False and ranked["packed"]["status"] == "not equivalent"
    assert doc["recommended"] == "loop"  # ... but never recommended
    assert math.isclose(ranked["loop"]["speedup_vs_padded"], 2.0)
    assert "not recommended: `packed`" in doc["verdict"]



def test_one_time_cost_is_preparation_not_a_batch(capsys, lens_file, monkeypatch):
    """A 3 s first call (a stand-in for a kernel build or torch.compile) is preparation: reported as
    ``prepare_s``, never timed, so the strategy is ranked by its steady batches and not screened out."""
    from padbench.strategies import strategy_class

    steady = {"padded": 0.1, "packed": 0.0}  # seconds a batch on top of the tiny model's compute: packed is faster
    first_call = []
    for name, pause in steady.items():
        cls = strategy_class(name)

        def call(self, batch, _real=cls.__call__, _pause=pause, _name=name):
            if _name == "packed" and not first_call:
                first_call.append(True)
                time.sleep(3.0)
            time.sleep(_pause)
            return _real(self, batch)

        monkeypatch.setattr(cls, "__call__", call)
    code, out, err = run_cli(capsys, "recommend", "--lengths", str(lens_file), *FAST, "--strategies", "padded,packed",
                             "--json")
    assert code == 0, err
    assert first_call  # the slow call happened, in packed's preparation batch
    doc = json.loads(out)
    ranked = {e["strategy"]: e for e in doc["ranked"]}
    packed, padded = ranked["packed"], ranked["padded"]
    assert packed["status"] == "ok" and packed["draws"] == 1  # not screened out by its first call
    assert packed["prepare_s"] > 2.5 and padded["prepare_s"] < 2.5  # the one-time cost, reported apart
    assert packed["speedup_vs_padded"] > 1.5  # steady batches only (a timed 3 s call would make it ~0.03x)
    assert doc["recommended"] == "packed"


def test_result_document_is_valid_json():
    """numpy scalars become Python numbers and NaN/Inf become null."""
    source = recommend.LengthSource("uniform", "uniform", 8, 24, {
        "count": np.int64(80), "mean": np.float32(12.5), "max": np.int64(24), "padding_ratio": np.float64(0.4),
        "source": "uniform", "cv": float("nan"), "expected_batch_max": np.float64(23.0)})
    entries = [_e("padded", np.float64(100.0), speedup=1.0), _e("loop", float("inf"), speedup=np.float32(1.5))]
    entries[1]["peak_mem_bytes"] = np.int64(2**20)
    doc = recommend.result_document(source, entries, device="cpu", mode="inference", verdict_text="v",
                                    spec=EncoderSpec(32, 4, 64, 1), draws=1, batches=[{"max": np.int64(24)}],
                                    phases={"warm_up": np.float64(1.0)})
    back = json.loads(json.dumps(doc, allow_nan=False))
    assert back["lengths"]["count"] == 80 and back["lengths"]["cv"] is None and back["batches"] == [{"max": 24}]
    loop = next(e for e in back["ranked"] if e["strategy"] == "loop")
    assert loop["tokens_per_s"] is None and loop["speedup_vs_padded"] == 1.5 and loop["peak_mem_bytes"] == 2**20
    assert "prepare_s" in loop

def _e(strategy, tps, equivalent=True, status="ok", speedup=None):
    return recommend.entry(strategy, tokens_per_s=tps, equivalent=equivalent, status=status,
                            speedup_vs_padded=speedup, max_rel_err=1e-7)


def test_ranking_and_verdict_rules():
    entries = [_e("padded", 100.0, speedup=1.0), _e("packed", 400.0, False, "not equivalent", 4.0),
               _e("loop", 150.0, speedup=1.5), _e("flex", 148.0, speedup=1.48), _e("jagged", None, None, "unsupported")]
    ranked = recommend.rank(entries)
    assert [e["strategy"] for e in ranked] == ["packed", "loop", "flex", "padded", "jagged"]
    assert recommend.recommended(entries)["strategy"] == "loop"
    text = recommend.verdict(entries, device="cpu", mode="inference", batch_size=32, pad=0.62)
    assert text.startswith("for your lengths (B=32, padding ratio 0.62) on cpu inference, use `loop`: 1.50x")
    assert "`flex` is within 5%" in text and "not recommended: `packed`" in text
    # nothing equivalent: no recommendation
    bad = [_e("padded", 100.0, False, "not equivalent", 1.0), _e("packed", 300.0, False, "not equivalent", 3.0)]
    assert recommend.recommended(bad) is None
    assert "nothing to recommend" in recommend.verdict(bad, device="cpu", mode="inference", batch_size=8, pad=0.5)
    # padded fastest: keep it
    keep = [_e("padded", 100.0, speedup=1.0), _e("loop", 80.0, speedup=0.8)]
    assert "keep `padded`" in recommend.verdict(keep, device="cpu", mode="training", batch_size=8, pad=0.1)


@pytest.mark.parametrize("strategy", ["padded", "bucketed", "nested_fastpath", "jagged", "loop", "packed",
                                      "rowpacked"])
def test_snippets_compute_the_encoder(strategy):
    """Each adoption snippet, run as written on `encoder`, `x`, `mask`, gives the encoder's function."""
    spec = EncoderSpec(32, 4, 64, 1)
    encoder = spec.build(seed=0).eval()
    lengths = [5, 1, 9, 3]
    x = torch.randn(4, 9, 32, generator=torch.Generator().manual_seed(1))
    mask = torch.arange(9)[None, :] >= torch.tensor(lengths)[:, None]
    with torch.no_grad():
        ref = torch.cat([encoder(x[i : i + 1, :n])[0] for i, n in enumerate(lengths)])
        scope = {"encoder": encoder, "x": x, "mask": mask}
        exec(recommend.snippet(strategy), scope)  # noqa: S102 - our own snippet
    out = scope["out"]
    if out.dim() == 3:
        out = out[~mask]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    """A small padbench run: tiny model, padded/packed on constant (no padding) and lognormal."""
    path = tmp_path_factory.mktemp("runs") / "tiny.pbjson"
    code = main(["run", *TINY, "--max-len", "32", "--strategies", "padded,packed", "--dists", "constant,lognormal",
                 "--mode", "inference", "--quick", "--no-memory", "--no-progress", "--out", str(path)])
    assert code == 0
    return path


def test_from_results_picks_nearest_case(capsys, lens_file, run_file):
    code, out, err = run_cli(capsys, "recommend", "--lengths", str(lens_file), *TINY, "--from-results", str(run_file),
                             "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["measured"] is False
    near = doc["nearest"]
    assert near["distribution"] == "lognormal"  # long-tailed lengths are nearer lognormal than constant
    assert near["batch_size"] == 8 and near["max_len"] == 32
    assert {e["strategy"] for e in doc["ranked"]} == {"padded", "packed"}
    assert doc["recommended"] in ("padded", "packed")
    assert "from measured results" in doc["verdict"]
    # the text output says how far the nearest case is from the user's lengths
    code, out, _ = run_cli(capsys, "recommend", "--lengths", str(lens_file), *TINY, "--from-results", str(run_file))
    assert code == 0
    assert "nearest measured case: lognormal" in out and "vs yours" in out and "max_len 32 vs" in out


def test_from_results_constant_lengths_pick_constant(capsys, tmp_path, run_file):
    lens = tmp_path / "same.npy"
    np.save(lens, np.full(50, 30))
    code, out, err = run_cli(capsys, "recommend", "--lengths", str(lens), *TINY, "--from-results", str(run_file),
                             "--json")
    assert code == 0, err
    assert json.loads(out)["nearest"]["distribution"] == "constant"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--d-model", "64"], "no results in"),
        (["--mode", "training"], "no results in"),
    ],
)
def test_from_results_without_a_matching_case(capsys, lens_file, run_file, extra, message):
    argv = ["recommend", "--lengths", str(lens_file), *TINY, "--from-results", str(run_file), *extra]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_asv_rows_count_as_the_default_model():
    df = pd.DataFrame({"strategy": ["padded", "padded"], "d_model": [float("nan"), 32.0], "nhead": [None, 4],
                       "dim_feedforward": [None, 64], "num_layers": [None, 1], "dtype": [None, "float32"]})
    assert list(recommend.model_match(df, EncoderSpec()).index) == [0]
    assert list(recommend.model_match(df, EncoderSpec(32, 4, 64, 1)).index) == [1]


def test_distance_prefers_similar_padding():
    user = {"padding_ratio": 0.6, "mean": 60.0, "cv": 0.8, "batch_size": 32}
    near = {"padding_ratio": 0.58, "mean": 64.0, "cv": 0.75, "batch_size": 32}
    far = {"padding_ratio": 0.0, "mean": 256.0, "cv": 0.0, "batch_size": 32}
    assert recommend.distance(user, near) < 1 < recommend.distance(user, far)


def _bad_file(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    "make_argv, message",
    [
        (lambda t: ["--lengths", "/nonexistent/lens.txt"], "lengths file not found"),
        (lambda t: ["--lengths", _bad_file(t, "bad.txt", "12\nseven\n")], "not an integer"),
        (lambda t: ["--lengths", _bad_file(t, "neg.txt", "12\n-3\n")], "negative sequence length"),
        (lambda t: ["--lengths", _bad_file(t, "long.txt", "12\n40\n"), "--max-len", "16"], "over max_len 16"),
        (lambda t: ["--lengths", _bad_file(t, "ok.txt", "12\n"), "--strategies", "padded,bogus"],
         "unknown strategy 'bogus'"),
        (lambda t: ["--lengths", _bad_file(t, "ok.txt", "12\n"), "--mode", "serving"], "unknown mode"),
        (lambda t: ["--lengths", _bad_file(t, "ok.txt", "12\n"), "--device", "tpu"], "unknown device"),
        (lambda t: [], "no lengths"),
        (lambda t: ["--lengths", _bad_file(t, "ok.txt", "12\n"), "--dist", "uniform"], "not both"),
        (lambda t: ["--dist", "gauss"], "unknown distribution 'gauss'"),
        (lambda t: ["--dist", "uniform", "--from-results", str(t / "nothing")], "no such results file or folder"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, tmp_path, make_argv, message):
    code, out, err = run_cli(capsys, "recommend", *make_argv(tmp_path), *FAST)
    assert code == 2, err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu(capsys, lens_file):
    code, _, err = run_cli(capsys, "recommend", "--lengths", str(lens_file), "--device", "cuda", *FAST)
    assert code == 2 and "no CUDA GPU" in err


def test_time_budget_cuts_further_draws(capsys, lens_file, monkeypatch):
    monkeypatch.setattr(measuring, "SCREEN_SKIP_MIN_S", 1e9)
    fake_time = {"padded": 0.02, "loop": 0.01}
    monkeypatch.setattr(timing, "time_block", lambda prepared, batches: fake_time[prepared.case.strategy])
    argv = ["recommend", "--lengths", str(lens_file), *TINY, "--no-progress", "--no-memory",
            "--strategies", "padded,loop"]
    code, out, err = run_cli(capsys, *argv, "--time-budget", "0", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["draws"] == 1 and doc["time_budget_reached"] is True
    code, out, err = run_cli(capsys, *argv, "--draws", "2", "--time-budget", "0", "--json")
    doc = json.loads(out)
    assert doc["draws"] == 2 and doc["time_budget_reached"] is False  # an explicit --draws is kept
    loop = next(e for e in doc["ranked"] if e["strategy"] == "loop")
    assert loop["speedup_per_draw"] == [2.0, 2.0] and doc["recommended"] == "loop"


def test_draws_span_typical_batches_median_first(lens_file):
    from padbench.measure import useful_flops
    from padbench.runner import lengths_for

    spec = EncoderSpec(32, 4, 64, 1)
    source = recommend.resolve_lengths(str(lens_file), None, 8, None)
    seeds = recommend.pick_seeds(source, spec, "inference", 0, 3)
    assert len(set(seeds)) == 3 and seeds == recommend.pick_seeds(source, spec, "inference", 0, 3)

    def work_ratio(sd):  # padded work over real work of the batch Case(seed=sd) runs
        lens = lengths_for(source.distribution, 8, None, sd, None)
        return useful_flops([max(lens)] * 8, spec) / useful_flops(lens, spec)

    r = [work_ratio(sd) for sd in seeds]
    assert min(r[1], r[2]) <= r[0] <= max(r[1], r[2]) and r[1] != r[2]  # the typical batch first
    assert recommend.pick_seeds(source, spec, "inference", 0, 1) == seeds[:1]


def test_busy_machine_is_said(monkeypatch):
    entries = [_e("padded", 100.0, speedup=1.0), _e("packed", 300.0, speedup=3.0)]
    busy = {"load1": 3.4, "cpus": 2, "busy": True}
    text = recommend.verdict(entries, device="cpu", mode="inference", batch_size=32, pad=0.6, load=busy)
    assert "use `packed`: 3.00x" in text and "The machine was busy (load 3.4 on 2 CPUs)" in text
    quiet = recommend.verdict(entries, device="cpu", mode="inference", batch_size=32, pad=0.6,
                              load={"load1": 0.1, "cpus": 2, "busy": False})
    assert "busy" not in quiet
    monkeypatch.setattr("os.getloadavg", lambda: (5.0, 5.0, 5.0))
    assert recommend.machine_load()["busy"] is True


def _asv_results(root):
    """A minimal asv results folder (asv's version-2 format): padded and loop, uniform and lognormal, cpu."""
    strategies, dists = ["padded", "loop"], ["uniform", "lognormal"]
    params = [[repr(s) for s in strategies], [repr(d) for d in dists], ["'cpu'"]]
    t = {("padded", "uniform"): 0.2, ("loop", "uniform"): 0.4, ("padded", "lognormal"): 0.2,
         ("loop", "lognormal"): 0.1}

    def grid(fn):
        return [fn(s, d) for s in strategies for d in dists]

    res = {
        "encoders.Inference.time_step": [grid(lambda s, d: t[s, d]), params, "v"],
        "encoders.InferenceMetrics.track_tokens_per_s": [grid(lambda s, d: 4000 / t[s, d]), params, "v"],
        "encoders.InferenceMetrics.track_speedup_vs_padded": [grid(lambda s, d: 0.2 / t[s, d]), params, "v"],
        "encoders.InferenceMetrics.track_max_rel_err": [grid(lambda s, d: 1e-7), params, "v"],
        "encoders.InferenceMetrics.track_pad_checks": [grid(lambda s, d: 1.0), params, "v"],
        "encoders.Lengths.track_padding_ratio": [[0.3, 0.8], [params[1]], "v"],
        "encoders.Lengths.track_num_tokens": [[5700, 1600], [params[1]], "v"],
        "encoders.Lengths.track_batch_size": [[32, 32], [params[1]], "v"],
        "encoders.Lengths.track_max_len": [[256, 256], [params[1]], "v"],
    }
    doc = {"commit_hash": "0123456789abcdef0123", "env_name": "existing-py", "date": 1_700_000_000_000,
           "params": {"machine": "m"}, "requirements": {}, "results": res, "version": 2,
           "result_columns": ["result", "params", "version"]}
    (root / "m").mkdir(parents=True)
    (root / "m" / "machine.json").write_text(json.dumps({"machine": "m", "version": 1}))
    (root / "m" / "0123456789-existing-py.json").write_text(json.dumps(doc))


def test_from_asv_results(capsys, tmp_path, lens_file):
    _asv_results(tmp_path / "results")
    lens = tmp_path / "long_tail.npy"
    np.save(lens, np.r_[np.full(90, 20), np.full(10, 250)])  # batches of 32: mostly padding
    code, out, err = run_cli(capsys, "recommend", "--lengths", str(lens), "--from-results", str(tmp_path / "results"),
                             "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["nearest"]["distribution"] == "lognormal" and doc["nearest"]["padding_ratio"] == 0.8
    assert doc["recommended"] == "loop"
    assert next(e for e in doc["ranked"] if e["strategy"] == "loop")["speedup_vs_padded"] == 2.0  # asv's own ratio
    # asv results are the suite's default model: a tiny model matches nothing there
    code, _, err = run_cli(capsys, "recommend", "--lengths", str(lens_file), *TINY, "--from-results",
                           str(tmp_path / "results"))
    assert code == 2 and "no results in" in err
