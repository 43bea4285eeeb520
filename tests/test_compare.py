"""`padbench compare` on synthetic padbench runs and asv result files (no timing runs)."""

from __future__ import annotations

import json

import pytest
from test_report import asv_result_file, rec, write_run

from padbench import compare
from padbench.cli import main

STRATEGIES = ["padded", "bucketed", "loop", "packed", "jagged"]
CASES = [(s, d, m) for s in STRATEGIES for d in ("uniform", "lognormal") for m in ("inference", "training")]


def records(jitter=0.0, slow=None, spread=0.04, changes=None):
    """One record per case; ``jitter`` moves every time by up to that fraction, ``slow`` a case 2x."""
    out = []
    for i, (s, d, m) in enumerate(CASES):
        tps = 1000.0 * (1 + i % 5) * (1 + jitter * ((-1) ** i))
        if (s, d, m) == slow:
            tps /= 2
        r = rec(s, d, tps=tps, mode=m)
        r["time_spread"] = spread
        out.append(r | (changes or {}).get((s, d, m), {}))
    return out


def test_same_records_twice_are_same_within_noise(tmp_path):
    a = write_run(tmp_path / "a.pbjson", records())
    b = write_run(tmp_path / "b.pbjson", records(jitter=0.03))
    df = compare.compare(a, b)
    assert len(df) == len(CASES)
    assert (df["verdict"] == compare.SAME).all(), df[["strategy", "ratio", "verdict"]]
    assert compare.regressed(df).empty


def test_twofold_slowdown_is_worse_and_the_only_regression(tmp_path, capsys):
    a = write_run(tmp_path / "a.pbjson", records())
    b = write_run(tmp_path / "b.pbjson", records(jitter=0.03, slow=("packed", "lognormal", "training")))
    df = compare.compare(a, b)
    worse = df[df["verdict"] == "worse"]
    assert list(zip(worse.strategy, worse.distribution, worse["mode"])) == [("packed", "lognormal", "training")]
    assert worse["ratio"].iloc[0] == pytest.approx(2.0, rel=0.07)  # 2x on top of the 3% jitter
    assert (df.drop(worse.index)["verdict"] == compare.SAME).all()

    assert main(["compare", str(a), str(b), "--only-regressed"]) == 0
    out = capsys.readouterr().out
    table = out.split("\n\n")[1]
    assert "packed" in table and "worse" in table and "loop" not in table and "2.06" in table
    assert "1 worse" in out
    # the reverse direction is an improvement
    assert set(compare.compare(b, a)["verdict"]) == {"better", compare.SAME}


def test_noise_decides_beyond_the_factor(tmp_path):
    """A 20% change is flagged when both runs are tight, and not when their spreads overlap."""
    case = ("loop", "uniform", "inference")
    a = write_run(tmp_path / "a.pbjson", records(spread=0.02))
    b = write_run(tmp_path / "b.pbjson", [r | ({"time_s": r["time_s"] * 1.2} if (r["strategy"], r["distribution"],
                                               r["mode"]) == case else {}) for r in records(spread=0.02)])
    row = compare.compare(a, b).set_index(["strategy", "distribution", "mode"]).loc[case]
    assert row["verdict"] == "worse"
    noisy = write_run(tmp_path / "n.pbjson", [r | {"time_spread": 0.5} for r in json.loads(b.read_text())["records"]])
    row = compare.compare(a, noisy).set_index(["strategy", "distribution", "mode"]).loc[case]
    assert row["verdict"] == compare.SAME and "within the noise" in row["note"]
    # a larger --factor swallows it
    assert compare.compare(a, b, factor=1.5)["verdict"].eq(compare.SAME).all()


def test_failed_in_b_is_a_regression_and_cases_match_on_the_model(tmp_path, capsys):
    a = write_run(tmp_path / "a.pbjson", records())
    changes = {("jagged", "uniform", "inference"): {"status": "oom", "message": "OutOfMemoryError: x", "time_s": None}}
    b = write_run(tmp_path / "b.pbjson", records(changes=changes) + [rec("loop", tps=1.0) | {"d_model": 512}])
    df = compare.compare(a, b)
    failed = df[df["verdict"] == "failed"]
    assert failed[["strategy", "note"]].values.tolist() == [["jagged", "oom: OutOfMemoryError: x"]]
    assert (df["verdict"] == "only in B").sum() == 1  # another model's case never matches
    assert main(["compare", str(a), str(b), "--only-regressed", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| device | mode | distribution | strategy |" in out and "| failed |" in out
    assert "d_model" in out  # a key that varies is shown


def test_csv_output(tmp_path, capsys):
    a = write_run(tmp_path / "a.pbjson", records())
    assert main(["compare", str(a), str(a), "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("strategy,device,mode") and "verdict" in lines[0]
    assert len(lines) == 1 + len(CASES)


@pytest.mark.parametrize("argv, message", [
    (["compare", "{tmp}/missing.pbjson", "{a}"], "no such results"),
    (["compare", "{a}", "{tmp}/empty"], "neither a padbench run file"),
])
def test_bad_paths_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    a = write_run(tmp_path / "a.pbjson", records())
    (tmp_path / "empty").mkdir()
    code = main([x.format(tmp=tmp_path, a=a) for x in argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_bad_factor_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", "a", "b", "--factor", "0.5"])
    assert exc.value.code == 2 and "must be >= 1" in capsys.readouterr().err


def _asv_with_stats(path, scale=1.0, half_ci=0.01, repeat=20):
    """Rewrite an asv result file's time_step with times x ``scale`` and a 99% interval of ±half_ci."""
    doc = json.loads(path.read_text())
    entry = doc["results"]["encoders.Inference.time_step"]
    vals = [v * scale if isinstance(v, float) and v == v else v for v in entry[0]]
    entry[0] = vals
    ok = [isinstance(v, float) and v == v for v in vals]
    entry[5] = [v * (1 - half_ci) if k else None for v, k in zip(vals, ok)]
    entry[6] = [v * (1 + half_ci) if k else None for v, k in zip(vals, ok)]
    entry[7] = [v * 0.99 if k else None for v, k in zip(vals, ok)]
    entry[8] = [v * 1.01 if k else None for v, k in zip(vals, ok)]
    entry[9:11] = [[1 if k else None for k in ok], [repeat if k else None for k in ok]]
    path.write_text(json.dumps(doc))
    return path


def test_asv_commits_and_machines(tmp_path, capsys):
    a = _asv_with_stats(asv_result_file(tmp_path / "r", commit="a" * 20))
    b = _asv_with_stats(asv_result_file(tmp_path / "r", commit="b" * 20, date=1_700_000_100_000), scale=1.05)
    df = compare.compare(a, b)
    assert len(df) == 4 and (df["verdict"] == compare.SAME).all()  # padded, loop x uniform, lognormal
    assert df["a_noise_pct"].dropna().tolist() == pytest.approx([1.0] * 4)
    slow = _asv_with_stats(b, scale=2.0)  # now 2.1x A
    df = compare.compare(a, slow)
    assert (df["verdict"] == "worse").all()
    # wide 99% intervals that overlap: not a measured difference, as in `asv compare`
    wide = _asv_with_stats(asv_result_file(tmp_path / "w", commit="c" * 20), scale=1.3, half_ci=0.3)
    assert (compare.compare(a, wide)["verdict"] == compare.SAME).all()
    # one sample per case (asv --quick): no noise known, the factor decides
    quick = _asv_with_stats(asv_result_file(tmp_path / "q", commit="d" * 20), scale=1.3, repeat=1)
    df = compare.compare(a, quick)
    assert (df["verdict"] == "worse").all() and df["b_noise_pct"].isna().all()
    # two machine folders: the latest commit of each
    asv_result_file(tmp_path / "m", machine="box-a", commit="e" * 20)
    other = asv_result_file(tmp_path / "m", machine="box-b", commit="f" * 20)
    _asv_with_stats(other, scale=3.0)
    assert main(["compare", str(tmp_path / "m" / "box-a"), str(tmp_path / "m" / "box-b")]) == 0
    out = capsys.readouterr().out
    assert "asv box-a @ eeeeeeee" in out and "asv box-b @ ffffffff" in out and "4 worse" in out
