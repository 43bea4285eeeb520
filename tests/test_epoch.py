"""`padbench epoch`: policies cover every sequence once, padding by definition, the estimate, the CLI."""

import json

import numpy as np
import pytest

from padbench.cli import main
from padbench.epoch import EpochConfig, build_epoch, costmodel, estimate, measure_epochs
from padbench.epoch.policies import POLICIES, mega_batch_size, strategies_for
from padbench.lengths import sample_lengths
from padbench.model import EncoderSpec

TINY = EncoderSpec(d_model=32, nhead=4, dim_feedforward=64, num_layers=1)


def lengths_sets():
    yield sample_lengths("lognormal", 700, 256, 11)
    yield sample_lengths("bimodal", 333, 128, 12)
    yield np.array([5])
    yield np.full(97, 40)
    yield np.array([1, 300, 2, 299, 3, 150, 150, 151])  # 300 is over the token budget of 256


def ffd_rows(lengths, row_len):
    """First-fit-decreasing, written plainly (the definition, not padbench's code)."""
    rows, room = [], []
    for n in sorted(lengths, reverse=True):
        for r in range(len(rows)):
            if room[r] >= n:
                rows[r].append(n)
                room[r] -= n
                break
        else:
            rows.append([n])
            room.append(row_len - n)
    return len(rows)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_covers_every_sequence_once_with_padding_by_definition(policy):
    for seed, lengths in enumerate(lengths_sets()):
        batch_size, max_tokens, row_len = 16, 256, int(max(lengths.max(), 64))
        epoch = build_epoch(policy, lengths, batch_size=batch_size, max_tokens=max_tokens, row_len=row_len, seed=seed)
        seen = np.concatenate([b.indices for b in epoch.batches])
        assert sorted(seen.tolist()) == list(range(len(lengths)))
        assert epoch.real_tokens == int(lengths.sum())
        padded = 0
        for b in epoch.batches:
            lens = lengths[b.indices]
            assert (b.lengths == lens).all() and len(lens) > 0
            if policy in ("random", "grouped"):
                assert len(lens) <= batch_size
                padded += len(lens) * int(lens.max())
            elif policy == "token_budget":
                assert len(lens) == 1 or len(lens) * lens.max() <= max_tokens
                padded += len(lens) * int(lens.max())
            elif policy == "rows":
                rows = ffd_rows(lens.tolist(), row_len)
                assert rows <= max(1, min(batch_size, max_tokens // row_len))
                padded += rows * row_len
            else:
                assert len(lens) == 1 or lens.sum() <= max_tokens
                padded += int(lens.sum())
        assert epoch.padded_tokens == padded
        assert epoch.padding_fraction == pytest.approx(1 - lengths.sum() / padded)


def test_grouped_sorts_inside_mega_batches_and_halves_padding():
    lengths = sample_lengths("lognormal", 2000, 512, 3)
    random_ = build_epoch("random", lengths, batch_size=32, max_tokens=8192, row_len=512)
    grouped = build_epoch("grouped", lengths, batch_size=32, max_tokens=8192, row_len=512)
    assert grouped.padding_fraction <= random_.padding_fraction / 2
    assert len(grouped.batches) == len(random_.batches)
    # Hugging Face's mega-batches: 50 batches, or fewer so that there are 4 of them
    assert mega_batch_size(2000, 32) == 15 * 32 and mega_batch_size(100_000, 32) == 50 * 32
    assert mega_batch_size(10, 32) == 32
    spread = np.median([b.lengths.max() - b.lengths.min() for b in grouped.batches])
    assert spread < np.median([b.lengths.max() - b.lengths.min() for b in random_.batches]) / 4


def test_policies_are_seeded():
    lengths = sample_lengths("uniform", 300, 128, 1)
    for policy in POLICIES:
        a = build_epoch(policy, lengths, batch_size=8, max_tokens=512, row_len=128, seed=4)
        b = build_epoch(policy, lengths, batch_size=8, max_tokens=512, row_len=128, seed=4)
        assert all((x.indices == y.indices).all() for x, y in zip(a.batches, b.batches))


def test_fit_recovers_a_known_cost():
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(30), rng.integers(1, 40, 30), rng.uniform(100, 1e4, (30, 4))])
    truth = np.array([0.01, 0.0, 2e-6, 0.0, 3e-9, 0.0])
    assert np.allclose(costmodel.fit(x, x @ truth), truth, rtol=1e-6, atol=1e-12)


def synthetic_cost(batch, name):
    """A strategy's batch cost with 5% noise: padded pays for padding, the others do not."""
    lens = np.asarray(batch.lengths_list, dtype=float)
    if name == "padded":
        work = len(lens) * lens.max() * 1e-5 + len(lens) * lens.max() ** 2 * 2e-8
    elif name == "rowpacked":
        work = lens.sum() * 1.1e-5 + lens.max() * 512 * 1e-8
    else:
        work = lens.sum() * 1e-5 + (lens**2).sum() * 2e-8
    noise = 1 + 0.05 * np.sin(lens.sum() * 7.0 + len(lens))  # deterministic, uncorrelated with size
    return 2e-3 + work * noise


def test_estimate_lands_within_15_percent_of_measuring_every_batch(monkeypatch):
    """Deterministic timings (the shared CPU is too noisy to test 15% on): every pair's estimate
    from its stratified sample against the same cost summed over every batch."""
    monkeypatch.setattr(estimate, "time_batch", lambda run, batch, cfg: synthetic_cost(batch, run.strategy.name))
    lengths = sample_lengths("lognormal", 1500, 256, 21)  # held out: not a file of the repository
    cfg = EpochConfig(spec=TINY, batch_size=16, max_tokens=16 * 200, row_len=256, memory=False)
    strategies = ["padded", "packed", "rowpacked"]
    sampled = measure_epochs(lengths, POLICIES, strategies, cfg, progress=False)
    full = measure_epochs(lengths, POLICIES, strategies, EpochConfig(**{**cfg.__dict__, "measure_all": True}),
                          progress=False)
    assert len(sampled) == len(full) == 8
    for s, f in zip(sampled, full):
        assert s["status"] == f["status"] == "ok", (s, f)
        assert s["measured_batches"] < f["measured_batches"] == f["steps"] or s["steps"] <= 8
        assert abs(s["epoch_s"] / f["epoch_s"] - 1) < 0.15, (s["policy"], s["strategy"], s["epoch_s"], f["epoch_s"])
        assert s["epoch_s_low"] <= s["epoch_s"] <= s["epoch_s_high"]
        assert f["epoch_s_low"] == f["epoch_s"] == f["epoch_s_high"]
        assert s["equivalent"] is True, s


def test_ctrl_c_keeps_what_was_timed(monkeypatch, tmp_path, capsys):
    calls = []

    def interrupted(run, batch, cfg):
        calls.append(1)
        if len(calls) == 5:  # 3 pairs timed round-robin: the second batch of the second pair
            raise KeyboardInterrupt
        return 0.01

    monkeypatch.setattr(estimate, "time_batch", interrupted)
    path = tmp_path / "lengths.txt"
    path.write_text("\n".join(str(n) for n in sample_lengths("uniform", 200, 64, 2)))
    out = tmp_path / "epoch.pbepoch"
    rc = main(["epoch", "--lengths", str(path), "--d-model", "32", "--ff", "64", "--layers", "1", "--batch-size", "8",
               "--policies", "random,varlen", "--strategies", "padded,packed", "--sample", "3", "--no-memory",
               "--no-progress", "--json",
               "--out", str(out)])
    assert rc == 130
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["policy"], r["strategy"], r["status"]) for r in rows] == [
        ("random", "padded", "interrupted"), ("random", "packed", "interrupted"), ("varlen", "packed", "interrupted")]
    assert [r["measured_batches"] for r in rows] == [2, 1, 1]
    assert all(r["epoch_s"] is not None and "interrupted after" in r["message"] for r in rows)
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and len(doc["rows"]) == len(rows)


FIELDS = ("policy", "strategy", "status", "steps", "real_tokens", "padded_tokens", "padding_fraction", "epoch_s",
          "epoch_s_low", "epoch_s_high", "tokens_per_s", "peak_mem_bytes", "equivalent", "measured_batches",
          "shuffled")


def test_cli_json_rows(tmp_path, capsys):
    path = tmp_path / "lengths.txt"
    lengths = sample_lengths("lognormal", 120, 96, 8)
    path.write_text("\n".join(str(n) for n in lengths) + "\n")
    rc = main(["epoch", "--lengths", str(path), "--d-model", "32", "--ff", "64", "--layers", "1", "--batch-size", "8",
               "--strategies", "padded,rowpacked,packed", "--sample", "3", "--no-progress", "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    expected = [(p, s) for p in POLICIES for s in strategies_for(p, ["padded", "rowpacked", "packed"])]
    assert [(r["policy"], r["strategy"]) for r in rows] == expected
    for r in rows:
        assert set(FIELDS) <= set(r)
        assert r["status"] == "ok" and r["equivalent"] is True, r
        assert r["real_tokens"] == int(lengths.sum())
        assert r["padding_fraction"] == pytest.approx(1 - r["real_tokens"] / r["padded_tokens"])
        assert r["tokens_per_s"] == pytest.approx(r["real_tokens"] / r["epoch_s"])
        assert r["peak_mem_bytes"] is None or r["peak_mem_bytes"] >= 0
        assert r["measured_batches"] == min(3, r["steps"])
    assert {r["policy"]: r["shuffled"] for r in rows}["random"] == "samples"


@pytest.mark.parametrize("content, extra, message", [
    (None, [], "lengths file not found"),
    ("", [], "holds no lengths"),
    ("4\n600\n", ["--max-len", "512"], "over max_len 512"),
    ("4\n6\n", ["--policies", "random,sorted"], "unknown policy 'sorted'"),
    ("4\n6\n", ["--strategies", "nope"], "unknown strategy"),
    ("4\nx\n", [], "not an integer length"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content, extra, message):
    path = tmp_path / "lengths.txt"
    if content is not None:
        path.write_text(content)
    assert main(["epoch", "--lengths", str(path), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


USER_ENCODER = """
import torch
from torch import nn

def build():
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(24, 3, 40, dropout=0.0, activation="relu", layer_norm_eps=1e-6,
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
"""


def _lengths_file(tmp_path, n=60, max_len=64, seed=5):
    path = tmp_path / "lengths.txt"
    lengths = sample_lengths("lognormal", n, max_len, seed)
    path.write_text("\n".join(str(int(x)) for x in lengths) + "\n")
    return path, lengths


def test_epoch_runs_the_users_own_model(tmp_path, capsys):
    """--model MODULE:CALLABLE: every pair runs (and is judged against) the user's encoder, not padbench's."""
    module = tmp_path / "epoch_user_model.py"
    module.write_text(USER_ENCODER)
    path, _ = _lengths_file(tmp_path)
    out = tmp_path / "user.pbepoch"
    rc = main(["epoch", "--lengths", str(path), "--model", f"{module}:build", "--batch-size", "8",
               "--policies", "random,rows,varlen", "--strategies", "padded,rowpacked,packed", "--sample", "3",
               "--no-memory", "--no-progress", "--json", "--out", str(out)])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert len(rows) == 4
    for r in rows:
        assert r["status"] == "ok" and r["equivalent"] is True, r
        assert r["model_kind"] == "user" and r["model_source"].endswith(":build")
        assert (r["d_model"], r["nhead"], r["dim_feedforward"], r["num_layers"]) == (24, 3, 40, 2)
        assert r["norm_first"] is True
    assert json.loads(out.read_text())["config"]["model"] == f"{module}:build"


def test_epoch_runs_a_hugging_face_encoder(tmp_path, capsys):
    pytest.importorskip("transformers")
    path, _ = _lengths_file(tmp_path, n=40, max_len=48)
    rc = main(["epoch", "--lengths", str(path), "--model", "hf:bert", "--hf-config",
               "num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64", "--batch-size", "8",
               "--policies", "random,varlen", "--strategies", "hf_sdpa,packed", "--sample", "3", "--no-memory",
               "--no-progress", "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["policy"], r["strategy"]) for r in rows] == [("random", "hf_sdpa"), ("random", "packed"),
                                                           ("varlen", "packed")]
    for r in rows:
        assert r["status"] == "ok" and r["equivalent"] is True, r
        assert r["model_kind"] == "hf" and r["d_model"] == 32


def test_a_pair_far_behind_stops_timing_early(monkeypatch):
    """After CUTOFF_AFTER batches, a pair over CUTOFF x the shortest epoch whose remaining sample
    would take over CUTOFF_REMAINING_S stops; a cheap one far behind is timed in full; --measure-all
    and --no-cutoff never cut."""
    slow = {"padded": 10.0, "bucketed": 1.0, "packed": 0.01}
    monkeypatch.setattr(estimate, "time_batch", lambda run, batch, cfg: slow[run.strategy.name])
    lengths = sample_lengths("lognormal", 400, 128, 4)
    cfg = EpochConfig(spec=TINY, batch_size=8, max_tokens=8 * 100, row_len=128, memory=False, sample=10)
    names = ["padded", "bucketed", "packed"]
    by = {r["strategy"]: r for r in measure_epochs(lengths, ["random"], names, cfg, progress=False)}
    assert by["padded"]["status"] == "ok" and by["padded"]["measured_batches"] == estimate.CUTOFF_AFTER
    assert "stopped" in by["padded"]["message"]
    assert by["padded"]["epoch_s"] == pytest.approx(by["padded"]["steps"] * 10.0)
    for name in ("bucketed", "packed"):  # 7 more batches of bucketed: 7 s, under CUTOFF_REMAINING_S
        assert by[name]["measured_batches"] == 10 and by[name]["message"] == ""
    uncut = measure_epochs(lengths, ["random"], names, EpochConfig(**{**cfg.__dict__, "cutoff": False}),
                           progress=False)
    assert [r["measured_batches"] for r in uncut] == [10, 10, 10]


def test_epoch_memory_probe_runs_an_explicit_batch():
    """The epoch's largest batch goes through runner.peak_memory's fresh process as explicit lengths."""
    from padbench.runner import Case, peak_memory

    case = Case("rowpacked", "epoch:rows", spec=TINY, lengths=(30, 2, 17, 9), row_len=40)
    assert Case.from_dict(json.loads(json.dumps(case.to_dict()))) == case
    peak = peak_memory(case)
    assert peak is None or peak > 0


def test_a_run_killed_mid_timing_has_written_what_it_timed(monkeypatch):
    """Rows are handed to ``on_row`` after every round of timing: a process killed mid-run (here a
    SystemExit, which nothing in padbench catches) leaves pending rows with their batches so far."""
    calls = []

    def dies(run, batch, cfg):
        calls.append(1)
        if len(calls) == 7:  # 2 pairs: 3 rounds, then death in the 4th
            raise SystemExit(9)
        return 0.01

    monkeypatch.setattr(estimate, "time_batch", dies)
    saved = []
    cfg = EpochConfig(spec=TINY, batch_size=8, max_tokens=8 * 64, row_len=64, memory=False, sample=5)
    with pytest.raises(SystemExit):
        measure_epochs(sample_lengths("uniform", 120, 64, 3), ["random"], ["padded", "packed"], cfg, progress=False,
                       on_row=lambda rows: saved.append([dict(r) for r in rows]))
    last = saved[-1]
    assert [(r["strategy"], r["status"], r["measured_batches"]) for r in last] == [("padded", "pending", 3),
                                                                                  ("packed", "pending", 3)]
    assert all(r["epoch_s"] == pytest.approx(0.01 * r["steps"]) for r in last)
