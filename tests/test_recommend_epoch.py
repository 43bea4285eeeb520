"""`padbench recommend --epoch`: the loaders make padbench's epochs, the snippets run, the choice and the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from padbench.cli import main
from padbench.epoch import build_epoch, estimate
from padbench.epoch import loaders as L
from padbench.epoch.policies import POLICIES, SHAPE
from padbench.lengths import sample_lengths
from padbench.model import EncoderSpec
from padbench.recommend.epoch import choose, exclusion
from padbench.recommend.snippets import epoch_model_snippet
from padbench.strategies.rowpacked import RowLayout

REPO = Path(__file__).resolve().parents[1]
TINY = ["--d-model", "16", "--nhead", "2", "--ff", "32", "--layers", "1", "--batch-size", "8"]


def lengths_sets():
    yield sample_lengths("lognormal", 700, 256, 11), 16, 256, 256
    yield sample_lengths("bimodal", 333, 128, 12), 8, 300, 128
    yield np.array([5]), 4, 64, 64
    yield np.full(97, 40), 16, 256, 64
    yield np.array([1, 300, 2, 299, 3, 150, 150, 151]), 4, 256, 300  # 300 is over the token budget


def as_lists(batches):
    return [[int(i) for i in b] for b in batches]


@pytest.mark.parametrize("policy", [p for p in POLICIES if p != "random"])
@pytest.mark.parametrize("seed", [0, 3])
def test_batch_samplers_make_padbench_epochs_index_for_index(policy, seed):
    for lengths, batch_size, max_tokens, row_len in lengths_sets():
        kw = {"batch_size": batch_size, "max_tokens": max_tokens, "row_len": row_len}
        sampler = L.batch_sampler(policy, lengths, seed=seed, **kw)
        expected = [b.indices for b in build_epoch(policy, lengths, seed=seed, **kw).batches]
        assert as_lists(sampler) == as_lists(expected)
        assert len(sampler) == len(expected)
        sampler.set_epoch(2)  # epoch k: padbench's epoch of seed + k
        assert as_lists(sampler) == as_lists(b.indices for b in build_epoch(policy, lengths, seed=seed + 2,
                                                                             **kw).batches)


def test_random_is_torch_shuffled_batches_of_b():
    lengths = sample_lengths("uniform", 101, 64, 1)
    batches = as_lists(L.batch_sampler("random", lengths, 8, 512, 64, seed=1))
    assert sorted(sum(batches, [])) == list(range(101))
    assert [len(b) for b in batches] == [8] * 12 + [5]
    assert batches != as_lists(L.batch_sampler("random", lengths, 8, 512, 64, seed=2))


@pytest.mark.parametrize("policy", POLICIES)
def test_collates_pad_as_the_policy_counts(policy):
    """Each collate's layout holds exactly the padded tokens padbench counts for the batch."""
    lengths, batch_size, max_tokens, row_len = sample_lengths("lognormal", 300, 96, 4), 8, 400, 96
    epoch = build_epoch(policy, lengths, batch_size=batch_size, max_tokens=max_tokens, row_len=row_len, seed=5)
    collate = L.collate_fn(policy, row_len)
    for b in epoch.batches:
        items = [torch.full((int(lengths[i]), 2), float(i)) for i in b.indices]
        out = collate(items)
        if SHAPE[policy] == "padded":
            x, mask = out
            assert x.shape[0] * x.shape[1] == b.padded_tokens and int((~mask).sum()) == b.real_tokens
            assert (x[:, :, 0][~mask] == torch.repeat_interleave(torch.tensor(b.indices, dtype=torch.float),
                                                                 torch.tensor(b.lengths))).all()
        elif SHAPE[policy] == "rows":
            x, segment, position = out
            assert x.shape[0] * x.shape[1] == b.padded_tokens
            layout = RowLayout.build(b.lengths.tolist(), row_len)  # what `rowpacked` runs
            assert (segment.flatten().numpy() == layout.sequence).all()
            assert (position.flatten().numpy() == np.where(layout.sequence >= 0, layout.position, 0)).all()
            assert (x[:, :, 0][segment >= 0] == torch.tensor(b.indices, dtype=torch.float)[segment[segment >= 0]]).all()
        else:
            tokens, cu_seqlens = out
            assert tokens.shape[0] == b.padded_tokens == b.real_tokens
            assert cu_seqlens.dtype == torch.int32 and cu_seqlens.tolist() == [0, *np.cumsum(b.lengths).tolist()]


class LoggedDataset(torch.utils.data.Dataset):
    """Item i: ``lengths[i]`` tokens of d features; records the order items are fetched in."""

    def __init__(self, lengths, d):
        self.items = [torch.randn(int(n), d, generator=torch.Generator().manual_seed(i)) for i, n in enumerate(lengths)]
        self.fetched = []

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        self.fetched.append(int(i))
        return self.items[i]


def run_loader_snippet(policy, lengths, *, d=16, batch_size=8, max_tokens=120, row_len=40, seed=0):
    """Exec the printed loader code; return (batches of indices, what the loader yielded per batch)."""
    code = L.loader_snippet(policy, batch_size=batch_size, max_tokens=max_tokens, row_len=row_len, seed=seed)
    names = L.BATCH[policy][0]
    assert code.count("        ...\n") == 1
    code = code.replace("        ...\n", f"        yielded.append(({names}))\n")
    dataset = LoggedDataset(lengths, d)
    scope = {"dataset": dataset, "lengths": lengths, "num_epochs": 1, "yielded": []}
    exec(code, scope)  # noqa: S102 - our own snippet
    sizes = [int((~y[1]).any(1).sum()) if SHAPE[policy] == "padded" else
             int(y[1].max()) + 1 if policy == "rows" else len(y[1]) - 1 for y in scope["yielded"]]
    flat, batches = dataset.fetched, []
    for n in sizes:
        batches.append(flat[:n])
        flat = flat[n:]
    assert not flat
    if policy != "random":
        assert batches == as_lists(scope["sampler"])
    return batches, scope["yielded"], dataset


@pytest.mark.parametrize("policy", POLICIES)
def test_printed_loader_code_makes_the_policys_batches(policy):
    lengths = sample_lengths("lognormal", 40, 40, 7)
    batches, _, _ = run_loader_snippet(policy, lengths)
    assert sorted(sum(batches, [])) == list(range(40))  # every sequence exactly once
    if policy != "random":
        epoch = build_epoch(policy, lengths, batch_size=8, max_tokens=120, row_len=40, seed=0)
        assert batches == as_lists(b.indices for b in epoch.batches)


PAIRS = [("random", "padded"), ("grouped", "bucketed"), ("token_budget", "packed"), ("token_budget", "rowpacked"),
         ("rows", "rowpacked"), ("varlen", "packed"), ("varlen", "flex")]


@pytest.mark.parametrize("policy, strategy", PAIRS)
def test_loader_and_model_code_compute_the_encoder(policy, strategy):
    """The two printed snippets together: every sequence comes out as the encoder gives it alone."""
    spec = EncoderSpec(16, 2, 32, 1)
    encoder = spec.build(seed=0).eval()
    lengths = sample_lengths("lognormal", 30, 40, 9)
    batches, yielded, dataset = run_loader_snippet(policy, lengths)
    code = epoch_model_snippet(SHAPE[policy], strategy)
    names = [n.strip() for n in L.BATCH[policy][0].split(",")]
    with torch.no_grad():
        for batch, values in zip(batches, yielded):
            scope = {"encoder": encoder, **dict(zip(names, values))}
            exec(code, scope)  # noqa: S102 - our own snippet
            out = scope["out"]
            if out.dim() == 3:
                out = out[~scope["mask"]]
            if policy == "rows":  # row order: the sequences as they sit in the rows
                seg = scope["segment"][scope["segment"] >= 0].tolist()
                order = [batch[s] for k, s in enumerate(seg) if k == 0 or seg[k - 1] != s]
            else:
                order = batch
            got = out.split([int(lengths[i]) for i in order])
            for i, o in zip(order, got):
                torch.testing.assert_close(o, encoder(dataset.items[i][None])[0], rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------ choosing
def row(policy, strategy, epoch_s, *, status="ok", equivalent=True, low=None, high=None, padding=0.3, **kw):
    return {"policy": policy, "strategy": strategy, "status": status, "equivalent": equivalent, "epoch_s": epoch_s,
            "epoch_s_low": low if low is not None else epoch_s, "epoch_s_high": high if high is not None else epoch_s,
            "padding_fraction": padding, "shuffled": "samples", "mode": "inference", "message": "", "why_not": "",
            **kw}


def test_choose_shortest_equivalent_epoch_and_says_what_was_excluded():
    rows = [row("random", "padded", 100.0, padding=0.7), row("random", "packed", 30.0),
            row("grouped", "loop", 5.0, equivalent=False, why_not="max rel err 3e-02"),
            row("grouped", "padded", 20.0, low=18.0, high=25.0), row("token_budget", "bucketed", 19.0, low=15, high=21),
            row("varlen", "varlen_attn", None, status="unsupported", message="varlen_attn does not run on cpu"),
            row("rows", "rowpacked", None, status="oom", message="out of memory"),
            row("varlen", "packed", 3.0, status="interrupted", message="interrupted after 2 of 8 batches")]
    c = choose(rows, current="random")
    assert (c["chosen"]["policy"], c["chosen"]["strategy"]) == ("token_budget", "bucketed")
    assert (c["runner_up"]["policy"], c["runner_up"]["strategy"]) == ("grouped", "padded")
    assert c["vs_baseline"] == pytest.approx(100 / 19)
    assert c["current"]["best"]["strategy"] == "packed" and c["current"]["ratio"] == pytest.approx(30 / 19)
    reasons = {(e["policy"], e["strategy"]): e["reason"] for e in c["excluded"]}
    assert reasons == {("grouped", "loop"): "not equivalent: max rel err 3e-02",
                       ("varlen", "varlen_attn"): "unsupported: varlen_attn does not run on cpu",
                       ("rows", "rowpacked"): "oom: out of memory",
                       ("varlen", "packed"): "interrupted: interrupted after 2 of 8 batches"}
    assert exclusion(row("random", "padded", 1.0, equivalent=None)) == "equivalence not checked"
    assert choose([row("random", "padded", 1.0, equivalent=False)])["chosen"] is None


def test_choose_on_the_committed_partial_lognormal_run():
    doc = json.loads((REPO / "tests" / "data" / "lognormal-cpu-partial.pbepoch").read_text())
    c = choose(doc["rows"], current="grouped")
    best = min((r for r in doc["rows"] if r["status"] == "ok" and r["equivalent"]), key=lambda r: r["epoch_s"])
    assert (c["chosen"]["policy"], c["chosen"]["strategy"]) == (best["policy"], best["strategy"])
    base = next(r for r in doc["rows"] if (r["policy"], r["strategy"]) == ("random", "padded"))
    assert c["vs_baseline"] == pytest.approx(base["epoch_s"] / best["epoch_s"])


# ------------------------------------------------------------------------------------ the command
@pytest.fixture(scope="module")
def lens_file(tmp_path_factory):
    rng = np.random.default_rng(3)
    lens = np.clip(np.round(rng.lognormal(np.log(10), 0.6, 40)), 1, 48).astype(int)
    path = tmp_path_factory.mktemp("lens") / "lens.txt"
    path.write_text("\n".join(map(str, lens)) + "\n")
    return path


def test_cli_json_chooses_from_the_rows_and_prints_both_snippets(capsys, lens_file, monkeypatch):
    """Deterministic batch times (this CPU is shared): packed beats padded, varlen beats random."""
    def cost(run, batch, cfg):
        lens = np.asarray(batch.lengths_list, dtype=float)
        work = lens.sum() if run.strategy.name != "padded" else len(lens) * lens.max()
        return 1e-3 + 1e-5 * work

    monkeypatch.setattr(estimate, "time_batch", cost)
    code = main(["recommend", "--epoch", "--lengths", str(lens_file), *TINY, "--policies", "varlen",
                 "--strategies", "packed,loop", "--current-policy", "grouped", "--sample", "3", "--no-memory",
                 "--no-progress", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    pairs = [(r["policy"], r["strategy"]) for r in doc["rows"]]
    # random + padded (the baseline) and the current policy are measured too
    assert pairs == [("random", "padded"), ("random", "packed"), ("random", "loop"), ("grouped", "padded"),
                     ("grouped", "packed"), ("grouped", "loop"), ("varlen", "packed")]
    ok = [r for r in doc["rows"] if r["status"] == "ok" and r["equivalent"]]
    best = min(ok, key=lambda r: r["epoch_s"])
    assert doc["recommended"] == {"policy": best["policy"], "strategy": best["strategy"]} == \
        {"policy": "varlen", "strategy": "packed"}
    assert doc["chosen"]["padding_fraction"] == 0 and doc["chosen"]["shuffled"] == "samples"
    base = doc["baseline"]
    assert doc["vs_baseline"] == pytest.approx(base["epoch_s"] / best["epoch_s"])
    assert doc["current"]["policy"] == "grouped" and doc["current"]["best"]["policy"] == "grouped"
    assert "class VarlenBatchSampler" in doc["snippets"]["loader"] and "varlen_collate" in doc["snippets"]["loader"]
    assert 'get("packed", encoder)(batch)' in doc["snippets"]["model"]
    assert "use `varlen` + `packed`" in doc["verdict"] and "shorter than `random` + `padded`" in doc["verdict"]


def test_cli_text_on_a_real_tiny_run(capsys, lens_file):
    code = main(["recommend", "--epoch", "--lengths", str(lens_file), *TINY, "--policies", "token_budget,varlen",
                 "--strategies", "padded,varlen_attn", "--sample", "3", "--no-memory", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "epoch s" in out and "vs random+padded" in out
    verdict = [ln for ln in out.splitlines() if ln.startswith("for an epoch of your 40 lengths (B=8) on cpu inference")]
    assert len(verdict) == 1 and ("use `token_budget` + `padded`" in verdict[0] or "keep `random`" in verdict[0])
    assert "Padding: " in out and "Order: " in out
    assert "Excluded: `varlen` + `varlen_attn` (unsupported: varlen_attn does not run on cpu" in out
    assert "data loader for `" in out and "model side: `padded`" in out


@pytest.mark.parametrize("argv, message", [
    (["--dist", "uniform"], "--epoch needs your lengths as a file"),
    (["--lengths", "LENS", "--from-results", "results"], "--from-results does not go with --epoch"),
    (["--lengths", "LENS", "--quick"], "--quick does not go with --epoch"),
    (["--lengths", "LENS", "--policies", "random,sorted"], "unknown policy 'sorted'"),
    (["--lengths", "LENS", "--current-policy", "random,rows"], "--current-policy takes one policy"),
])
def test_bad_epoch_input_is_one_line(capsys, lens_file, argv, message):
    argv = [str(lens_file) if a == "LENS" else a for a in argv]
    assert main(["recommend", "--epoch", *argv, *TINY, "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and message in err, err


def test_epoch_options_need_epoch_and_are_padbench_epochs(capsys, lens_file):
    assert main(["recommend", "--lengths", str(lens_file), "--policies", "rows", "--no-progress"]) == 2
    assert "--policies goes with --epoch" in capsys.readouterr().err
    from padbench.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for opt in ("--policies", "--max-tokens", "--sample", "--measure-all", "--no-cutoff"):
        rec, ep = ({o: a for a in sub[c]._actions for o in a.option_strings}[opt] for c in ("recommend", "epoch"))
        assert (rec.help, rec.default, rec.type) == (ep.help, ep.default, ep.type)


def test_cli_epoch_on_a_hugging_face_model_gives_its_own_snippet(capsys, lens_file):
    pytest.importorskip("transformers")
    code = main(["recommend", "--epoch", "--lengths", str(lens_file), "--model", "hf:bert", "--hf-config",
                 "num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64", "--batch-size", "8",
                 "--policies", "varlen", "--strategies", "packed,hf_sdpa", "--sample", "3", "--no-memory",
                 "--no-progress", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert all(r["model_kind"] == "hf" and r["status"] == "ok" and r["equivalent"] for r in doc["rows"])
    assert {(r["policy"], r["strategy"]) for r in doc["rows"]} >= {("random", "hf_sdpa"), ("varlen", "packed")}
    chosen = doc["recommended"]["strategy"]
    assert ("packed_forward(model, seqs" in doc["snippets"]["model"]) == (chosen not in ("hf_sdpa", "hf_eager"))
