"""`padbench check hf:SOURCE`: the leak checks on a Hugging Face encoder's own padded call."""
from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch
from test_check import run_cli

from padbench.check import check_hf
from padbench.check.inputs import make_token_batches
from padbench.errors import PadbenchError
from padbench.models import hf_load

needs_hf = pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs transformers")

TINY = "num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64"
SHORT = ["--batch-size", "3", "--max-len", "6"]


def tiny_bert(cls=None, **config):
    """A BertModel (or a subclass) of the tiny size, transformers' own initialisation, dropout as configured."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32, **config)
    return (cls or transformers.BertModel)(cfg).eval()


def flagged(report) -> set:
    return {(v.check, v.mode) for v in report.violations}


def causes(report, check: str) -> set:
    return {v.message.split(" changed ")[1].split(":")[0] for v in report.violations
            if v.check == check and v.kind == "output"}


# ------------------------------------------------------------------------------ clean models
@needs_hf
@pytest.mark.parametrize("attn", [None, "eager"])
def test_tiny_bert_is_clean(attn):
    report = check_hf("hf:bert", hf_config=TINY, attn=attn, batch_size=3, max_len=6)
    assert report.verdict == "clean", report.summary()
    assert report.per_token and report.dtype == "float64" and report.modes == ("train", "eval")
    assert report.model == f"hf:bert (BertModel, {attn or 'sdpa'} attention)"
    checks = {(c.check, c.mode, c.path, c.kind) for c in report.comparisons}
    for check in ("pad_content", "appended_padding", "empty_sequence"):
        assert (check, "train", "autograd", "gradient") in checks and (check, "eval", "no_grad", "output") in checks
    # BERT pads with id 0: the pads are refilled with random ids and the last id (0 is the base)
    pad = [c for c in report.comparisons if (c.check, c.mode, c.path, c.kind) == ("pad_content", "eval", "no_grad",
                                                                                  "output")]
    assert len(pad) == 2
    assert any("dropout off" in n for n in report.notes)


@needs_hf
def test_tiny_bert_cli_exit_0_and_json(capsys):
    code, out, err = run_cli(capsys, "hf:bert", "--hf-config", TINY, *SHORT)
    assert code == 0 and out.startswith("OK") and not err
    assert "hf:bert (BertModel, sdpa attention)" in out
    code, out, _ = run_cli(capsys, "hf:bert", "--hf-config", TINY, *SHORT, "--attn", "eager", "--mode", "eval",
                           "--dtype", "float32", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "clean" and doc["ok"] and doc["modes"] == ["eval"]
    assert doc["dtype"] == "float32" and doc["model"] == "hf:bert (BertModel, eager attention)"


@needs_hf
def test_saved_bert_dir(capsys, tmp_path):
    # pad_token_id 3: the pads are refilled with random ids, id 0 and the last id
    tiny_bert(pad_token_id=3).save_pretrained(tmp_path)
    code, out, err = run_cli(capsys, f"hf:{tmp_path}", "--json", *SHORT)
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "clean", err
    assert any(f"weights from {tmp_path}" in n for n in doc["notes"])
    pad = [c for c in doc["comparisons"] if (c["check"], c["mode"], c["path"], c["kind"]) == (
        "pad_content", "eval", "no_grad", "output")]
    assert len(pad) == 3


@needs_hf
def test_roberta_and_distilbert_are_clean():
    for source, config in (("roberta", TINY), ("distilbert", "n_layers=1,dim=32,n_heads=2,hidden_dim=64")):
        report = check_hf(f"hf:{source}", hf_config=config, batch_size=3, max_len=6, modes=("eval",))
        assert report.verdict == "clean", report.summary()


# ------------------------------------------------------------------------------ leaks
@needs_hf
def test_model_ignoring_attention_mask_leaks_cli_exit_1(capsys, monkeypatch):
    import transformers

    own = transformers.BertModel.forward

    def no_mask(self, input_ids=None, attention_mask=None, **kwargs):
        return own(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(transformers.BertModel, "forward", no_mask)
    code, out, _ = run_cli(capsys, "hf:bert", "--hf-config", TINY, *SHORT, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["verdict"] == "leak"
    found = {(v["check"], v["mode"], v["kind"]) for v in doc["violations"]}
    for mode in ("train", "eval"):
        assert {("pad_content", mode, "output"), ("pad_content", mode, "gradient"),
                ("appended_padding", mode, "output")} <= found
    code, out, _ = run_cli(capsys, "hf:bert", "--hf-config", TINY, *SHORT)
    assert code == 1 and out.startswith("LEAK") and "instead of pad_token_id 0" in out


@needs_hf
def test_mask_built_from_pad_ids_leaks_only_when_pads_hold_other_ids():
    """A model that masks ``input_ids != pad_token_id`` instead of reading attention_mask: the base
    batch (pads = pad_token_id) hides it; pads holding other ids show it."""
    import transformers

    class OwnMask(transformers.BertModel):
        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            own = (input_ids != self.config.pad_token_id).long()
            return super().forward(input_ids=input_ids, attention_mask=own, **kwargs)

    model = tiny_bert(OwnMask, pad_token_id=3)
    report = check_hf(model, batch_size=3, max_len=6)
    assert report.verdict == "leak"
    assert flagged(report) == {("pad_content", "train"), ("pad_content", "eval")}, report.summary()
    assert causes(report, "pad_content") == {f"when the pads held {what} instead of pad_token_id 3"
                                             for what in ("random ids", "id 0", "id 49")}
    assert report.model == "OwnMask (OwnMask, sdpa attention)"


@needs_hf
def test_nan_in_the_empty_row_only_is_a_hazard():
    import transformers

    class NanEmptyRow(transformers.BertModel):
        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            out = super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            empty = (attention_mask.sum(1) == 0)[:, None, None]
            out.last_hidden_state = torch.where(empty, float("nan"), out.last_hidden_state)
            return out

    report = check_hf(tiny_bert(NanEmptyRow), batch_size=3, max_len=6)
    assert report.verdict == "hazard", report.summary()
    assert {v.check for v in report.violations} == {"empty_sequence"}


@needs_hf
def test_dropout_in_a_model_object_is_handled_as_for_any_model():
    report = check_hf(tiny_bert(hidden_dropout_prob=0.5), batch_size=3, max_len=6)
    assert report.verdict == "clean", report.summary()
    assert {(na["check"], na["mode"]) for na in report.not_applicable} == {
        ("appended_padding", "train"), ("empty_sequence", "train")}


# ------------------------------------------------------------------------------ nothing changes
@needs_hf
def test_models_are_checked_on_copies():
    model = tiny_bert()
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    check_hf(model, attn="eager", batch_size=3, max_len=6, modes=("train",))
    assert model.config._attn_implementation == "sdpa" and not model.training
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    check_hf("hf:bert", hf_config=TINY, attn="eager", batch_size=3, max_len=6, modes=("eval",))
    shared, _, _ = hf_load.load("bert", TINY, 0)
    assert shared.config._attn_implementation == "sdpa" and shared.dtype == torch.float32


def test_token_batches():
    b = make_token_batches([4, 1, 6], 2, vocab_size=20, pad_id=5, seed=0, device="cpu")
    base = b["base"]
    assert base.x.dtype == torch.long and base.x.shape == (3, 6)
    assert (base.x[~base.mask] != 5).all() and (base.x[base.mask] == 5).all()
    assert base.shapes() == "input_ids [3, 6], attention_mask [3, 6]"
    assert [v.cause.split(" held ")[1] for v in b["pad_content"]] == [
        "random ids instead of pad_token_id 5", "id 0 instead of pad_token_id 5", "id 19 instead of pad_token_id 5"]
    for v in b["pad_content"]:
        assert torch.equal(v.x[~v.mask], base.x[~base.mask]) and torch.equal(v.mask, base.mask)
    longer, empty = b["appended_padding"], b["empty_sequence"]
    assert longer.x.shape == (3, 8) and (longer.x[:, 6:] == 5).all() and torch.equal(longer.x[:, :6], base.x)
    assert empty.lengths == [4, 1, 6, 0] and empty.mask[3].all() and (empty.x[3] == 5).all()
    assert len(make_token_batches([4, 1], 2, vocab_size=20, pad_id=0, seed=0, device="cpu")["pad_content"]) == 2


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("argv, text", [
    (["hf:gpt2"], "not a local directory with config.json, nor a model type"),
    (["hf:{tmp}/missing"], "not a local directory with config.json"),
    (["hf:{tmp}"], "the directory has no config.json"),
    (["hf:"], "hf: needs a source"),
    (["hf:bert", "--hf-config", "hiden_size=8"], "BertConfig has no hiden_size"),
    (["hf:bert", "--hf-config", "num_hidden_layers"], "--hf-config takes key=value"),
    (["hf:bert", "--hf-config", "num_hidden_layers=abc"], "expected int, got str"),
    (["hf:bert", "--hf-config", TINY, "--max-len", "600"], "takes at most 512 tokens"),
    (["hf:bert", "--d-model", "32"], "--d-model applies to MODULE:CALLABLE"),
    (["hf:bert", "--per-sequence"], "--per-sequence applies to MODULE:CALLABLE"),
    (["padbench.examples.models:masked_mean_pool", "--d-model", "16", "--attn", "eager"],
     "--attn applies to hf:SOURCE models only"),
    (["padbench.examples.models:masked_mean_pool", "--hf-config", "a=1"], "--hf-config applies to hf:SOURCE"),
    (["padbench.examples.models:masked_mean_pool"], "needs --d-model"),
])
def test_bad_input_one_line_exit_2(capsys, tmp_path, argv, text):
    if argv[0].startswith("hf:") and importlib.util.find_spec("transformers") is None:
        pytest.skip("needs transformers")
    code, out, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2 and out == ""
    assert err.startswith("padbench check: error: ") and text in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_without_transformers_says_how_to_install(capsys, monkeypatch):
    hf_load.load.cache_clear()
    monkeypatch.setitem(sys.modules, "transformers", None)
    code, _, err = run_cli(capsys, "hf:bert", "--hf-config", TINY)
    assert code == 2 and "pip install padbench[hf]" in err and err.count("\n") == 1


def test_library_bad_input():
    with pytest.raises(PadbenchError, match="expected hf:SOURCE or a Hugging Face model"):
        check_hf(42)
    with pytest.raises(PadbenchError, match="config has a vocab_size"):
        check_hf(torch.nn.Linear(2, 2))
    if importlib.util.find_spec("transformers") is not None:
        with pytest.raises(PadbenchError, match="hf_config applies to an hf:SOURCE string"):
            check_hf(tiny_bert(), hf_config="a=1")
        with pytest.raises(PadbenchError, match="unknown attention implementation"):
            check_hf(tiny_bert(), attn="flash")
