"""Tests for `padbench check` (padbench.check): leaks found, clean models passed, CLI exit codes."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from padbench.check import CheckReport, check_padding, load_model
from padbench.cli import main as cli_main
from padbench.cli.check import add_parser
from padbench.errors import PadbenchError
from padbench.examples import models as M

pytestmark = pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage")

REPO = Path(__file__).resolve().parents[1]
D = M.D_MODEL


def flagged(report: CheckReport) -> set:
    return {(v.check, v.mode) for v in report.violations}


def kinds(report: CheckReport, check: str, mode: str) -> set:
    return {v.kind for v in report.violations if (v.check, v.mode) == (check, mode)}


# --------------------------------------------------------------------------- the examples
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(M.EXPECTED))
def test_examples_flag_exactly_what_they_should(name, dtype):
    report = check_padding(getattr(M, name)(), D, dtype=dtype)
    assert flagged(report) == M.EXPECTED[name], report.summary()
    assert report.ok == (not M.EXPECTED[name])
    json.dumps(report.to_dict())          # always serialisable
    assert ("OK" in report.summary()) == report.ok


def test_per_token_and_per_sequence_are_detected():
    assert check_padding(M.transformer_encoder(), D).per_token is True
    assert check_padding(M.masked_mean_pool(), D).per_token is False


def test_ignores_mask_names_outputs_and_parameters():
    report = check_padding(M.ignores_mask(), D)
    out = [v for v in report.violations if v.kind == "output" and v.check == "pad_content" and v.mode == "train"]
    assert len(out) == 1
    v = out[0]
    # the location is a valid position of that row, and the difference is O(1), not round-off
    assert v.location["position"] < report.lengths[v.location["batch"]]
    assert v.rel_diff > 1e-3 and v.max_abs_diff > 0
    assert "valid positions" in v.message and f"batch {v.location['batch']}" in v.message
    grads = [v for v in report.violations if v.kind == "gradient" and v.check == "pad_content"]
    assert grads and all(v.parameters for v in grads)
    names = {p["name"] for p in grads[0].parameters}
    assert "encoder.layers.0.self_attn.in_proj_weight" in names
    assert all(p["rel_diff"] > 1e-3 for p in grads[0].parameters)
    assert "in_proj_weight" in grads[0].message
    # both eval paths are reported, the inference (no_grad) one included
    assert {v.path for v in report.violations if v.mode == "eval"} == {"autograd", "no_grad"}


def test_unmasked_mean_pool_under_the_fast_path_only_leaks_with_more_padding():
    # nn.TransformerEncoder's eval fast path writes exact zeros at pads, so an unmasked mean over
    # them does not see the pad *contents* -- but it still divides by the padded length
    report = check_padding(M.unmasked_mean_pool(), D)
    no_grad = {v.check for v in report.violations if v.path == "no_grad"}
    assert no_grad == {"appended_padding"}


def test_neg_inf_attention_nan_on_fully_padded_row():
    report = check_padding(M.neg_inf_attention(), D)
    for mode in ("train", "eval"):
        assert kinds(report, "empty_sequence", mode) >= {"nonfinite_output", "nonfinite_gradient"}
    v = next(v for v in report.violations if v.kind == "nonfinite_output")
    empty_row = len(report.lengths)          # appended after the base rows
    assert v.location["batch"] == empty_row
    assert "0 at valid positions" in v.message and "fully padded" in v.message
    g = next(v for v in report.violations if v.kind == "nonfinite_gradient")
    assert "qkv.weight" in {p["name"] for p in g.parameters}


def test_batchnorm_leaks_in_train_mode_only():
    report = check_padding(M.batchnorm_tokens(), D)
    assert {m for _, m in flagged(report)} == {"train"}
    assert check_padding(M.batchnorm_tokens(), D, modes=("eval",)).ok
    v = next(v for v in report.violations if v.kind == "gradient" and v.check == "pad_content")
    assert {p["name"] for p in v.parameters} >= {"bn.weight", "proj.weight"}


def test_clean_models_pass_in_float32_at_larger_sizes():
    """No false alarm from float32 round-off with longer, differently blocked padded lengths."""
    torch.manual_seed(1)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = enc

        def forward(self, x, m):
            return self.enc(x, src_key_padding_mask=m)

    report = check_padding(Wrap(), 32, batch_size=6, max_len=40, dtype=torch.float32)
    assert report.ok, report.summary()
    worst = max(c.rel_diff for c in report.comparisons)
    assert worst < report.rtol / 10       # at least 10x headroom
    assert check_padding(M.masked_max_pool(), D, dtype=None).dtype == "float32"


# --------------------------------------------------------------------------- models that are not examples
class GRULastState(nn.Module):
    """Per-sequence: the GRU's final hidden state after running over the pads too (leaks)."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(D, 8, batch_first=True)

    def forward(self, x, key_padding_mask):
        _, h = self.gru(x)
        return h[-1]


class GRUPerToken(nn.Module):
    """Per-token outputs of a forward GRU: position t never sees the pads after it (clean)."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(D, 8, batch_first=True)

    def forward(self, x, key_padding_mask):
        return self.gru(x)[0]


class PackedGRU(nn.Module):
    """Per-sequence GRU state with packing: clean, but packing refuses a length-0 sequence."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(D, 8, batch_first=True)

    def forward(self, x, key_padding_mask):
        lengths = (~key_padding_mask).sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)
        return h[-1]


class ConvTokens(nn.Module):
    """Conv1d (kernel 3) over the tokens: the last valid token reads the first pad (leaks)."""

    def __init__(self, mask_input: bool = False):
        super().__init__()
        self.conv = nn.Conv1d(D, D, 3, padding=1)
        self.mask_input = mask_input

    def forward(self, x, key_padding_mask):
        if self.mask_input:   # zero the pads first: they then look like the conv's own zero padding
            x = x.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


class MaskedAttentionPool(nn.Module):
    """Learned-query attention pooling with masked_fill(finfo.min): clean, finite on empty rows."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(D, D)
        self.query = nn.Parameter(torch.randn(D))

    def forward(self, x, key_padding_mask):
        h = torch.tanh(self.proj(x))
        scores = (h @ self.query).masked_fill(key_padding_mask, torch.finfo(h.dtype).min)
        return (torch.softmax(scores, dim=1).unsqueeze(-1) * h).sum(1)


class DropoutPool(nn.Module):
    """Masked mean pooling over an encoder with dropout 0.1: clean, but random in train mode."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(D, 2, 32, dropout=0.1, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

    def forward(self, x, key_padding_mask):
        h = self.enc(x, src_key_padding_mask=key_padding_mask)
        h = h.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)
        return h.sum(1) / (~key_padding_mask).sum(1, keepdim=True).clamp(min=1)


def _seeded(cls, *args):
    torch.manual_seed(0)
    return cls(*args)


LEAK = {(c, m) for c in ("pad_content", "appended_padding") for m in ("train", "eval")}


@pytest.mark.parametrize("cls, args, expected", [
    (GRULastState, (), LEAK),
    (GRUPerToken, (), set()),
    (PackedGRU, (), {("empty_sequence", "train"), ("empty_sequence", "eval")}),
    (ConvTokens, (), LEAK),
    (ConvTokens, (True,), set()),
    (MaskedAttentionPool, (), set()),
], ids=["gru_last_state", "gru_per_token", "packed_gru", "conv", "masked_conv", "attention_pool"])
def test_models_outside_the_examples(cls, args, expected):
    for dtype in (torch.float64, torch.float32):
        report = check_padding(_seeded(cls, *args), D, dtype=dtype)
        assert flagged(report) == expected, report.summary()


def test_packed_gru_failure_on_empty_sequence_is_reported_not_raised():
    report = check_padding(_seeded(PackedGRU), D)
    v = next(v for v in report.violations if v.check == "empty_sequence")
    assert v.kind == "error" and "length 0" in v.message


def test_conv_leak_is_located_at_the_boundary():
    report = check_padding(_seeded(ConvTokens), D)
    v = next(v for v in report.violations if (v.check, v.mode, v.kind) == ("pad_content", "train", "output"))
    b, t = v.location["batch"], v.location["position"]
    assert t == report.lengths[b] - 1        # the last valid token, next to the first pad


def test_dropout_makes_appended_padding_not_applicable_in_train_mode():
    report = check_padding(_seeded(DropoutPool), D)
    assert report.ok, report.summary()
    na = {(n["check"], n["mode"]) for n in report.not_applicable}
    assert na == {("appended_padding", "train"), ("empty_sequence", "train")}
    # pad contents are still compared in train mode (same seed, same shape: same dropout masks) ...
    done = {(c.check, c.mode, c.kind) for c in report.comparisons}
    assert {("pad_content", "train", "output"), ("pad_content", "train", "gradient")} <= done
    # ... and eval mode still covers appended padding
    assert ("appended_padding", "eval", "output") in done
    assert "n/a [appended_padding, train]" in report.summary()


def test_dropout_with_a_real_leak_is_still_caught_in_train_mode():
    class LeakyDropout(DropoutPool):
        def forward(self, x, key_padding_mask):
            return self.enc(x).mean(1)     # mask ignored, pads averaged
    report = check_padding(_seeded(LeakyDropout), D)
    assert ("pad_content", "train") in flagged(report)


def test_unreproducible_forward_is_not_applicable_not_a_leak():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(D, D)
            self.gen = torch.Generator().manual_seed(0)   # never reseeded: differs call to call

        def forward(self, x, key_padding_mask):
            noise = torch.randn(x.shape, generator=self.gen, dtype=x.dtype)
            return self.lin(x + noise)
    report = check_padding(Noisy(), D)
    assert report.ok
    assert {n["check"] for n in report.not_applicable} == {"all"}
    assert "not reproducible" in report.summary()


def test_pre_norm_fused_path_nan_matches_what_torch_does():
    """nn.TransformerEncoderLayer(norm_first=True): the check reports exactly what torch computes.

    In torch 2.13 its eval/no_grad fused kernel writes NaN at the pads of a fully padded row
    (the mask-respecting standard path writes finite values).  Probe torch directly, then expect
    the check to agree, so the test holds whichever way a future torch behaves.
    """
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(D, 2, 32, dropout=0.0, batch_first=True, norm_first=True)

    class PreNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

        def forward(self, x, m):
            return self.enc(x, src_key_padding_mask=m)

    model = PreNorm().double().eval()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 3:] = True
    mask[1] = True
    with torch.no_grad():
        probe = model(x, mask)
    assert torch.isfinite(probe[0, :3]).all()
    nan_at_pads = bool(torch.isnan(probe[1]).any())

    report = check_padding(PreNorm(), D)
    found = {(v.check, v.mode, v.path, v.kind) for v in report.violations}
    assert found == ({("empty_sequence", "eval", "no_grad", "nonfinite_output")} if nan_at_pads else set())
    if nan_at_pads:
        assert "only at pads" in report.violations[0].message


# --------------------------------------------------------------------------- state, RNG, shapes
def test_model_state_mode_grads_and_rng_are_restored():
    torch.manual_seed(0)
    model = M.BatchNormTokens()
    model.train()
    model.proj.eval()                      # a mixed mode must survive too
    model.proj.weight.grad = torch.full_like(model.proj.weight, 3.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: m.training for n, m in model.named_modules()}
    rng = torch.get_rng_state()
    threads = torch.get_num_threads()
    torch.set_float32_matmul_precision("high")
    try:
        for dtype in (torch.float64, None):
            check_padding(model, D, dtype=dtype)
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision("highest")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)   # running stats untouched
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert torch.equal(model.proj.weight.grad, torch.full_like(model.proj.weight, 3.0))
    assert model.bn.weight.grad is None
    assert model.proj.weight.dtype == torch.float32
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.get_num_threads() == threads


def test_batch_size_equal_to_length_does_not_confuse_detection():
    # B == L == 4, and per-sequence outputs of width 4 == L: two padded lengths disambiguate
    class Pool4(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(D, 4)

        def forward(self, x, m):
            return self.lin(x.masked_fill(m.unsqueeze(-1), 0).sum(1))
    r = check_padding(Pool4(), D, lengths=[4, 1, 2, 3])
    assert r.per_token is False and r.ok, r.summary()
    r = check_padding(M.transformer_encoder(), D, lengths=[4, 1, 2, 3])
    assert r.per_token is True and r.ok
    assert check_padding(M.transformer_encoder(), D, per_token=True).per_token is True
    lengths = check_padding(M.masked_mean_pool(), D, batch_size=6, max_len=6).lengths
    assert len(lengths) != max(lengths)    # defaults keep B != L


def test_default_lengths_are_seeded_and_padded():
    a = check_padding(M.masked_mean_pool(), D, seed=3).lengths
    assert a == check_padding(M.masked_mean_pool(), D, seed=3).lengths
    assert max(a) == 10 and min(a) <= 5 and len(a) == 4


@pytest.mark.parametrize("kwargs, text", [
    (dict(lengths=[3, 0, 2]), "lengths must be >= 1"),
    (dict(modes=("training",)), "unknown mode"),
    (dict(batch_size=1), "batch_size"),
    (dict(max_len=1), "max_len"),
])
def test_bad_arguments(kwargs, text):
    with pytest.raises(PadbenchError, match=text):
        check_padding(M.masked_mean_pool(), D, **kwargs)


def test_bad_models():
    with pytest.raises(PadbenchError, match=r"failed in eval mode: RuntimeError"):
        check_padding(M.masked_mean_pool(), 8)                 # wrong d_model

    class Tuple(nn.Module):
        def forward(self, x, m):
            return x, m
    with pytest.raises(PadbenchError, match="returned tuple"):
        check_padding(Tuple(), D)

    class Flat(nn.Module):
        def forward(self, x, m):
            return x.reshape(-1)
    with pytest.raises(PadbenchError, match="first dimension must be the batch size"):
        check_padding(Flat(), D)

    class Weird(nn.Module):
        def forward(self, x, m):
            return x[:, : x.shape[1] // 2]                     # neither [B, L, ...] nor fixed
    with pytest.raises(PadbenchError, match="cannot tell per-token from per-sequence"):
        check_padding(Weird(), D)
    with pytest.raises(PadbenchError, match="expected an nn.Module"):
        check_padding(lambda x, m: x, D)
    with pytest.raises(PadbenchError, match="per-token outputs expected"):
        check_padding(M.masked_mean_pool(), D, per_token=True)
    with pytest.raises(PadbenchError, match="per-sequence outputs expected"):
        check_padding(M.transformer_encoder(), D, per_token=False)


def test_models_that_write_into_their_inputs_or_skip_autograd():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(D, D)

        def forward(self, x, m):
            x.masked_fill_(m.unsqueeze(-1), 0.0)      # scribbles on the caller's tensor
            return self.lin(x)
    assert check_padding(InPlace(), D).ok

    class Frozen(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(D, D)

        def forward(self, x, m):
            with torch.no_grad():
                return self.lin(x)
    report = check_padding(Frozen(), D)
    assert report.ok and not any(c.kind == "gradient" for c in report.comparisons)
    assert any("gradients not checked" in n for n in report.notes)


# --------------------------------------------------------------------------- CLI
def run_cli(capsys, *argv):
    try:
        code = cli_main(["check", *argv])
    except SystemExit as exc:  # argparse: a usage error
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exit_codes(capsys):
    code, out, err = run_cli(capsys, "padbench.examples.models:masked_mean_pool", "--d-model", "16")
    assert code == 0 and "OK" in out and not err
    code, out, _ = run_cli(capsys, "padbench.examples.models:unmasked_mean_pool", "--d-model", "16")
    assert code == 1 and "LEAK" in out and "[pad_content, train, autograd]" in out
    code, out, _ = run_cli(capsys, "padbench.examples.models:batchnorm_tokens", "--d-model", "16",
                           "--mode", "eval", "--dtype", "float32")
    assert code == 0


def test_cli_json(capsys):
    code, out, _ = run_cli(capsys, "padbench.examples.models:neg_inf_attention", "--d-model", "16",
                           "--json", "--batch-size", "3", "--max-len", "7", "--seed", "2")
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False and doc["per_token"] is True and doc["seed"] == 2
    assert len(doc["lengths"]) == 3 and max(doc["lengths"]) == 7
    assert {v["check"] for v in doc["violations"]} == {"empty_sequence"}
    code, out, _ = run_cli(capsys, "padbench.examples.models:masked_max_pool", "--d-model", "16",
                           "--lengths", "7,2,5", "--json")
    assert code == 0 and json.loads(out)["lengths"] == [7, 2, 5]


BAD_FILE = """
import torch
def not_a_module():
    return 42
def boom():
    raise RuntimeError("no weights here")
VALUE = 3
"""

GOOD_FILE = """
from torch import nn
class Clean(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 16)
    def forward(self, x, key_padding_mask):
        return self.lin(x)
def build():
    return Clean()
"""


@pytest.mark.parametrize("target, argv, text", [
    ("no_colon_here", [], "expected MODULE:CALLABLE"),
    ("padbench_no_such_module_xyz:build", [], "cannot import padbench_no_such_module_xyz"),
    ("padbench.examples.models:no_such_factory", [], "has no attribute 'no_such_factory'"),
    ("padbench.examples.models:D_MODEL", [], "is not callable"),
    ("{bad}:not_a_module", [], "returned int, expected a torch.nn.Module"),
    ("{bad}:boom", [], "calling"),
    ("{bad}:VALUE", [], "is not callable"),
    ("does/not/exist.py:build", [], "no such file"),
    ("padbench.examples.models:masked_mean_pool", ["--d-model", "8"], "failed in eval mode: RuntimeError"),
    ("padbench.examples.models:masked_mean_pool", ["--d-model", "16", "--batch-size", "1"], "batch_size"),
])
def test_cli_bad_input_one_line_exit_2(capsys, tmp_path, target, argv, text):
    bad = tmp_path / "bad_models.py"
    bad.write_text(BAD_FILE)
    target = target.format(bad=bad)
    code, out, err = run_cli(capsys, target, *(argv or ["--d-model", "16"]))
    assert code == 2
    assert err.startswith("padbench check: error: ") and text in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


def test_cli_loads_a_file_and_a_module_from_cwd(capsys, tmp_path, monkeypatch):
    (tmp_path / "pb_check_user_models.py").write_text(GOOD_FILE)
    code, out, _ = run_cli(capsys, f"{tmp_path / 'pb_check_user_models.py'}:build", "--d-model", "16")
    assert code == 0, out
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    code, out, _ = run_cli(capsys, "pb_check_user_models:build", "--d-model", "16", "--per-token")
    assert code == 0, out
    assert isinstance(load_model("pb_check_user_models:build"), nn.Module)


def test_cli_bad_device_exit_2(capsys):
    code, _, err = run_cli(capsys, "padbench.examples.models:masked_mean_pool", "--d-model", "16",
                           "--device", "nope")
    assert code == 2 and err.startswith("padbench check: error: bad device 'nope'")


def test_cli_usage_errors_exit_2(capsys):
    code, _, err = run_cli(capsys, "padbench.examples.models:masked_mean_pool")   # no --d-model
    assert code == 2 and "--d-model" in err


def test_add_parser_wires_a_subcommand(capsys):
    import argparse
    parser = argparse.ArgumentParser(prog="padbench")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["check", "padbench.examples.models:ignores_mask", "--d-model", "16",
                              "--mode", "train"])
    assert args.func(args) == 1
    assert "[pad_content, train, autograd]" in capsys.readouterr().out


def test_python_dash_m(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "padbench", "check", "padbench.examples.models:transformer_encoder",
         "--d-model", "16", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True


def test_padbench_cli_check_subcommand(capsys):
    from padbench import cli

    code = cli.main(["check", "padbench.examples.models:masked_max_pool", "--d-model", "16"])
    assert code == 0
    assert cli.main(["check", "padbench.examples.models:ignores_mask", "--d-model", "16"]) == 1
    assert cli.main(["check", "padbench.examples.models", "--d-model", "16"]) == 2
    err = capsys.readouterr().err
    assert "expected MODULE:CALLABLE" in err


# --------------------------------------------------------------------------- verdicts and exit codes
class CleanTokens(nn.Module):
    """Per-token MLP: never mixes tokens, so padding cannot reach a real token (clean)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(D, D)

    def forward(self, x, key_padding_mask):
        return torch.tanh(self.lin(x))


class EncoderWithoutMask(nn.Module):
    """nn.TransformerEncoder never given the mask: real tokens attend to pads (leak)."""

    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, 2, 32, dropout=0.0, batch_first=True), 1,
                                         enable_nested_tensor=False)

    def forward(self, x, key_padding_mask):
        return self.enc(x)


class UnnestedEncoder(nn.Module):
    """nn.TransformerEncoder with the mask but without nested tensors: its eval/no_grad fast kernel
    returns NaN for a fully padded row and finite values everywhere else (hazard)."""

    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, 2, 32, dropout=0.0, batch_first=True), 2,
                                         enable_nested_tensor=False)

    def forward(self, x, key_padding_mask):
        return self.enc(x, src_key_padding_mask=key_padding_mask)


class EmptyRowNaN(nn.Module):
    """Adds 0 / (valid count): NaN in every output of an empty row only, none in gradients (hazard)."""

    def __init__(self, per_token: bool = True):
        super().__init__()
        self.lin = nn.Linear(D, D)
        self.per_token = per_token

    def forward(self, x, key_padding_mask):
        count = (~key_padding_mask).sum(1).to(x.dtype)
        nan_if_empty = torch.zeros_like(count) / count
        h = self.lin(x)
        if self.per_token:
            return h + nan_if_empty[:, None, None]
        return h.masked_fill(key_padding_mask.unsqueeze(-1), 0).sum(1) + nan_if_empty[:, None]


class MaxPoolHead(nn.Module):
    """Masked max pool (-inf for an empty row) then a linear head: NaN in that row's output and,
    through the head's backward (0 * -inf), in the parameter gradients (leak)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(D, D)
        self.head = nn.Linear(D, 4)

    def forward(self, x, key_padding_mask):
        h = self.proj(x).masked_fill(key_padding_mask.unsqueeze(-1), -math.inf)
        return self.head(h.max(dim=1).values)


class BatchScaled(nn.Module):
    """Scales every row by sum(1 / length): an empty row makes real-token outputs Inf (leak)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(D, D)

    def forward(self, x, key_padding_mask):
        scale = (1.0 / (~key_padding_mask).sum(1).to(x.dtype)).sum()
        return self.lin(x) * scale


def severities(report: CheckReport) -> set:
    return {v.severity for v in report.violations}


def test_verdict_clean_leak_hazard():
    clean = check_padding(_seeded(CleanTokens), D)
    assert clean.verdict == "clean" and clean.summary().splitlines()[0].startswith("OK")
    leak = check_padding(_seeded(EncoderWithoutMask), D)
    assert leak.verdict == "leak" and leak.summary().splitlines()[0].startswith("LEAK")
    for per_token in (True, False):
        report = check_padding(_seeded(EmptyRowNaN, per_token), D)
        assert report.verdict == "hazard", report.summary()
        assert {v.kind for v in report.violations} == {"nonfinite_output"}
        assert {v.check for v in report.violations} == {"empty_sequence"}
        first = report.summary().splitlines()[0]
        assert first.startswith("HAZARD") and "not a leak" in first and "fully padded" in first
        assert all("no real" in v.message and v.location["batch"] == len(report.lengths)
                   for v in report.violations)


def test_unnested_encoder_nan_in_empty_row_is_a_hazard():
    model = _seeded(UnnestedEncoder).double().eval()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 3:] = True
    mask[1] = True
    with torch.no_grad():
        probe = model(x, mask)
    assert torch.isfinite(probe[0]).all() and torch.isnan(probe[1]).all(), "torch's fast path changed"

    report = check_padding(_seeded(UnnestedEncoder), D)
    assert report.verdict == "hazard", report.summary()
    found = {(v.check, v.mode, v.path, v.kind, v.severity) for v in report.violations}
    assert found == {("empty_sequence", "eval", "no_grad", "nonfinite_output", "hazard")}
    assert "0 at valid positions" in report.violations[0].message


def test_nan_in_gradients_or_real_outputs_is_a_leak():
    report = check_padding(_seeded(MaxPoolHead), D)
    assert report.verdict == "leak", report.summary()
    grads = [v for v in report.violations if v.kind == "nonfinite_gradient"]
    assert grads and {v.severity for v in grads} == {"leak"}
    assert "head.weight" in {p["name"] for p in grads[0].parameters}
    # the NaN output itself sits in the empty row only: reported as what it is
    outs = [v for v in report.violations if v.kind == "nonfinite_output"]
    assert outs and {v.severity for v in outs} == {"hazard"}
    first = report.summary().splitlines()[0]
    assert first.startswith("LEAK") and "hazard" in first

    report = check_padding(_seeded(BatchScaled), D)
    assert report.verdict == "leak", report.summary()
    v = next(v for v in report.violations if v.kind == "nonfinite_output")
    assert v.severity == "leak" and "0 at valid positions" not in v.message


def test_failure_on_empty_sequence_is_a_hazard():
    report = check_padding(_seeded(PackedGRU), D)
    assert report.verdict == "hazard" and severities(report) == {"hazard"}


USER_MODELS = """
import torch
from torch import nn
D = 16

def _layer():
    torch.manual_seed(0)
    return nn.TransformerEncoderLayer(D, 2, 32, dropout=0.0, batch_first=True)

class Clean(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoder(_layer(), 1, enable_nested_tensor=True)
    def forward(self, x, key_padding_mask):
        return self.enc(x, src_key_padding_mask=key_padding_mask)

class NoMask(Clean):
    def forward(self, x, key_padding_mask):
        return self.enc(x)

class Unnested(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoder(_layer(), 2, enable_nested_tensor=False)
    def forward(self, x, key_padding_mask):
        return self.enc(x, src_key_padding_mask=key_padding_mask)

class MaxPoolHead(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(D, 4)
    def forward(self, x, key_padding_mask):
        h = x.masked_fill(key_padding_mask.unsqueeze(-1), float("-inf")).max(dim=1).values
        return self.head(h)
"""


@pytest.mark.parametrize("factory, code, verdict", [
    ("Clean", 0, "clean"),
    ("NoMask", 1, "leak"),
    ("Unnested", 3, "hazard"),
    ("MaxPoolHead", 1, "leak"),
], ids=["clean", "ignores_mask", "empty_row_nan", "nan_gradients"])
def test_cli_exit_code_per_verdict(capsys, tmp_path, factory, code, verdict):
    path = tmp_path / "user_models.py"
    path.write_text(USER_MODELS)
    got, out, err = run_cli(capsys, f"{path}:{factory}", "--d-model", "16")
    assert got == code, out + err
    assert out.splitlines()[0].startswith({"clean": "OK", "leak": "LEAK", "hazard": "HAZARD"}[verdict])
    got, out, _ = run_cli(capsys, f"{path}:{factory}", "--d-model", "16", "--json")
    doc = json.loads(out)
    assert got == code and doc["verdict"] == verdict
    assert {v["severity"] for v in doc["violations"]} <= {"leak", "hazard"}


def test_cli_missing_module_exit_2(capsys):
    code, out, err = run_cli(capsys, "padbench_no_such_module_xyz:build", "--d-model", "16")
    assert code == 2 and out == "" and err.startswith("padbench check: error: cannot import")


def test_json_writes_non_finite_numbers_as_null():
    report = check_padding(_seeded(EncoderWithoutMask), D)
    report.violations[0].rel_diff = math.inf
    report.comparisons[0].max_abs_diff = math.nan
    doc = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert doc["violations"][0]["rel_diff"] is None and doc["comparisons"][0]["max_abs_diff"] is None


def test_load_model_is_importable_without_the_checker():
    code = ("import sys; from padbench.user_model import load_model; "
            "m = load_model('padbench.examples.models:masked_mean_pool'); "
            "assert 'padbench.check' not in sys.modules, sorted(sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_module_modes_are_named_apart_from_strategy_modes():
    from padbench import check, strategies
    assert check.TORCH_MODES == ("train", "eval")
    assert not hasattr(check, "MODES") and set(check.TORCH_MODES).isdisjoint(strategies.MODES)
