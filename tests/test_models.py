"""The user's own model: an nn.TransformerEncoder (`MODULE:CALLABLE`) and a Hugging Face encoder (`hf:`).

Each strategy is compared with a float64 per-sequence reference written here, independently of
padbench's: the user's module deep-copied to float64, dropout off, one sequence at a time.
"""

import copy
import json
import textwrap

import pytest
import torch

from padbench import equivalence, judge
from padbench.cli import main
from padbench.runner import Case, measure_case, prepare

USER_MODULE = textwrap.dedent("""
    import torch
    from torch import nn

    def odd():
        # pre-norm, relu, eps 1e-6, odd sizes, no bias, seq-first layout, dropout on, a final norm
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(36, 3, 50, dropout=0.1, activation="relu", layer_norm_eps=1e-6,
                                           batch_first=False, norm_first=True, bias=False)
        enc = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(36, eps=1e-6, bias=False),
                                    enable_nested_tensor=False)
        with torch.no_grad():
            for p in enc.parameters():
                p.add_(0.1 * torch.randn_like(p))
        return enc

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(16, 2)
            self.body = nn.TransformerEncoder(
                nn.TransformerEncoderLayer(16, 2, 24, dropout=0.0, activation=nn.SiLU(), batch_first=True), 1)

    def wrapped():
        return Net()

    def two():
        layer = nn.TransformerEncoderLayer(16, 2, 24, batch_first=True)
        return nn.Sequential(nn.TransformerEncoder(layer, 1), nn.TransformerEncoder(layer, 1))

    def big_eps():
        # an eps large enough that ignoring it (torch's 1e-5 instead) moves outputs by far more than 1e-4
        torch.manual_seed(1)
        layer = nn.TransformerEncoderLayer(16, 2, 24, dropout=0.0, layer_norm_eps=0.5, batch_first=True)
        return nn.TransformerEncoder(layer, 2)

    def number():
        return 3

    def linear():
        return nn.Linear(3, 3)
""")

FWD_TOL, GRAD_TOL = 1e-4, 1e-3


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "user_models.py"
    path.write_text(USER_MODULE)
    return str(path)


def _norm_err(a, ref):
    return float((a.double() - ref).abs().max() / ref.abs().max())


def independent_reference(module, seqs, weights, *, seq_first):
    """The user's module in float64, dropout off, one sequence at a time: output and parameter grads."""
    ref = copy.deepcopy(module).double().eval()  # eval: dropout off (the only train/eval difference here)
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        outs = []
        for x, w in zip(seqs, weights):
            x = x.double()
            out = ref(x[:, None])[:, 0] if seq_first else ref(x[None])[0]
            (out * w.double()).sum().backward()
            outs.append(out.detach())
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    return torch.cat(outs), {n: p.grad for n, p in ref.named_parameters()}


@pytest.mark.parametrize("strategy", ["padded", "bucketed", "jagged", "loop", "packed"])
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_user_encoder_non_default_settings(user_file, strategy, mode):
    from padbench.models import user

    target = f"{user_file}:odd"
    prepared = prepare(Case(strategy, "bimodal", mode=mode, batch_size=5, max_len=24, seed=3, model=target))
    out, grads = prepared.output(prepared.batch)
    original = user.load(target)[2]  # the user's module (a CPU copy, dropout off: still its own weights)
    batch = prepared.batch
    w = equivalence.loss_weights(batch)
    ref_out, ref_grads = independent_reference(original, batch.to_list(), w.split(batch.lengths_list), seq_first=True)
    assert _norm_err(out, ref_out) < FWD_TOL
    if mode == "training":
        assert set(grads) == set(ref_grads)
        for name, g in grads.items():
            assert _norm_err(g, ref_grads[name]) < GRAD_TOL, name


@pytest.mark.parametrize("strategy, mode", [("packed", "inference"), ("packed", "training"), ("jagged", "inference"),
                                            ("nested_fastpath", "inference")])
def test_each_layer_norms_eps_is_honoured(user_file, strategy, mode):
    rec = measure_case(Case(strategy, "uniform", mode=mode, batch_size=4, max_len=16, model=f"{user_file}:big_eps"),
                       min_run_time=0.01, max_run_time=0.05, memory=False)
    assert rec["status"] == "ok" and judge.equivalent(rec), (rec["message"], judge.judge(rec))


def test_user_configuration_is_read_and_the_users_module_untouched(user_file):
    from padbench.models import user
    from padbench.user_model import load_model

    target = f"{user_file}:odd"
    cfg = user.describe(target).config
    assert cfg == {"d_model": 36, "nhead": 3, "dim_feedforward": 50, "activation": "relu", "norm_first": True,
                   "layer_norm_eps": 1e-6, "bias": False, "num_layers": 2, "final_norm": True, "final_norm_eps": 1e-6}
    module = load_model(target)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    from padbench.model import EncoderSpec
    from padbench.models import resolve

    m = resolve(target, "", EncoderSpec(dtype=torch.float64), 0, "cpu")
    assert all(p.dtype == torch.float64 for p in m.encoder.parameters())
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    rebuilt = m.encoder.layers[0]
    assert rebuilt.norm1.eps == 1e-6 and rebuilt.linear1.bias is None and rebuilt.self_attn.batch_first


def test_custom_activation_inside_a_larger_module(user_file):
    """A callable activation: the C++ dense layers do not know it, so packed runs torch's ops on it, exactly."""
    rec = measure_case(Case("packed", "uniform", batch_size=4, max_len=16, model=f"{user_file}:wrapped"),
                       min_run_time=0.01, max_run_time=0.05, memory=False)
    assert rec["status"] == "ok" and judge.equivalent(rec), rec
    assert rec["activation"] == "custom:SiLU"
    assert rec["num_params"] == 16 * 48 + 48 + 16 * 16 + 16 + 2 * 16 * 24 + 24 + 16 + 4 * 16


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_user_encoder_through_the_cli(capsys, tmp_path, user_file):
    out_file = tmp_path / "r.pbjson"
    code, out, err = run_cli(capsys, "run", "--model", f"{user_file}:odd", "--dists", "uniform", "--batch-size", "4",
                             "--max-len", "16", "--quick", "--no-progress", "--no-memory",
                             "--strategies", "padded,packed", "--out", str(out_file))
    assert code == 0, err
    records = json.loads(out_file.read_text())["records"]
    assert len(records) == 4
    for rec in records:
        assert rec["model_kind"] == "user" and rec["model_source"] == f"{user_file}:odd"
        assert json.loads(rec["model_config"])["layer_norm_eps"] == 1e-6 and rec["d_model"] == 36
        assert judge.equivalent(rec), rec


@pytest.mark.parametrize("argv, message", [
    (["--model", "no_such_module_xyz:build"], "cannot import no_such_module_xyz"),
    (["--model", "{f}:missing"], "has no attribute 'missing'"),
    (["--model", "{f}:number"], "returned int, expected a torch.nn.Module"),
    (["--model", "{f}:linear"], "holding no nn.TransformerEncoder"),
    (["--model", "{f}:two"], "holds 2 nn.TransformerEncoders"),
    (["--model", "{f}:odd", "--d-model", "32"], "--d-model sets the spec model's sizes"),
    (["--model", "{f}:odd", "--norm-first"], "--norm-first sets the spec model's sizes"),
    (["--hf-config", "hidden_size=8"], "--hf-config applies to hf: models only"),
    (["--model", "nocolon"], "--model takes spec, MODULE:CALLABLE or hf:SOURCE"),
])
def test_bad_models_are_refused_in_one_line(capsys, user_file, argv, message):
    argv = [a.replace("{f}", user_file) for a in argv]
    code, _, err = run_cli(capsys, "run", *argv)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_records_of_different_models_never_share_a_group():
    from padbench.table import GROUP

    assert {"model_kind", "model_source", "model_config", "num_params"} <= set(GROUP)


def test_hf_without_transformers_says_how_to_install(capsys, monkeypatch):
    import sys

    from padbench.models import hf_load

    hf_load.load.cache_clear()
    monkeypatch.setitem(sys.modules, "transformers", None)
    code, _, err = run_cli(capsys, "run", "--model", "hf:bert")
    assert code == 2 and "pip install padbench[hf]" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------- hf:
TINY_BERT = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                 max_position_embeddings=64, layer_norm_eps=1e-7, hidden_dropout_prob=0.1)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(**TINY_BERT))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # non-zero biases and norms: a dropped bias must show
                p.add_(0.1 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("bert")
    model.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("strategy", ["hf_sdpa", "hf_eager", "padded", "nested_fastpath", "loop", "packed"])
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_saved_bert_runs_as_hf_dir(bert_dir, strategy, mode):
    rec = measure_case(Case(strategy, "uniform", mode=mode, batch_size=4, max_len=20, seed=1, model=f"hf:{bert_dir}"),
                       min_run_time=0.01, max_run_time=0.05, memory=False)
    if strategy == "nested_fastpath" and mode == "training":
        assert rec["status"] == "unsupported"
        return
    assert rec["status"] == "ok", rec["message"]
    assert judge.equivalent(rec), judge.judge(rec)
    assert rec["model_kind"] == "hf" and rec["model_source"] == f"hf:{bert_dir}" and rec["d_model"] == 32
    cfg = json.loads(rec["model_config"])
    assert cfg["weights"] == f"from {bert_dir}" and cfg["layer_norm_eps"] == 1e-7


def test_hf_reference_is_the_saved_model_itself(bert_dir):
    """The loaded weights are the saved ones: packed output equals BertModel's own padded call."""
    transformers = pytest.importorskip("transformers")
    from padbench.models.hf import packed_forward

    model = transformers.BertModel.from_pretrained(bert_dir).eval()
    gen = torch.Generator().manual_seed(0)
    seqs = [torch.randint(1, 97, (n,), generator=gen) for n in (5, 17, 1, 9)]
    got = packed_forward(model, seqs)
    ids = torch.zeros(len(seqs), 17, dtype=torch.long)
    mask = torch.zeros(len(seqs), 17, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = s, 1
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
    for i, s in enumerate(seqs):
        assert got[i].shape == (len(s), 32)
        assert _norm_err(got[i], ref[i, : len(s)].double()) < 1e-5
    # weights changed in place: the converted copy follows
    with torch.no_grad():
        model.encoder.layer[0].output.dense.bias.add_(1.0)
        ref2 = model(input_ids=ids[:1, :5], attention_mask=mask[:1, :5]).last_hidden_state[0]
    assert _norm_err(packed_forward(model, seqs[:1])[0], ref2.double()) < 1e-5


@pytest.mark.parametrize("source, config", [
    ("roberta", "vocab_size=50,hidden_size=16,num_hidden_layers=1,num_attention_heads=2,intermediate_size=24,"
                "hidden_act=gelu_new"),
    ("distilbert", "vocab_size=50,dim=16,n_layers=1,n_heads=2,hidden_dim=24,activation=relu"),
])
def test_hf_model_types_with_overrides(source, config):
    pytest.importorskip("transformers")
    for strategy in ("hf_sdpa", "packed"):
        rec = measure_case(Case(strategy, "uniform", mode="training", batch_size=3, max_len=12, model=f"hf:{source}",
                                hf_config=config), min_run_time=0.01, max_run_time=0.05, memory=False)
        assert rec["status"] == "ok" and judge.equivalent(rec), (strategy, judge.judge(rec), rec["message"])


def test_hf_strategies_refuse_other_models():
    from padbench.strategies import names

    rec = measure_case(Case("hf_sdpa", "uniform", batch_size=2, max_len=8), memory=False)
    assert rec["status"] == "unsupported" and "hf:SOURCE" in rec["message"]
    assert "hf_sdpa" not in names() and "hf_sdpa" in names("hf")


@pytest.mark.parametrize("argv, message", [
    (["--model", "hf:gpt2"], "not a local directory with config.json, nor a model type"),
    (["--model", "hf:bert", "--hf-config", "hiden_size=8"], "BertConfig has no hiden_size"),
    (["--model", "hf:bert", "--dists", "lognormal", "--max-len", "600"], "takes at most 512 tokens"),
    (["--model", "hf:bert", "--d-model", "64"], "--d-model sets the spec model's sizes"),
])
def test_bad_hf_models_are_refused_in_one_line(capsys, argv, message):
    pytest.importorskip("transformers")
    code, _, err = run_cli(capsys, "run", *argv)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1


def test_hf_dir_of_an_unsupported_type_is_refused(capsys, tmp_path):
    transformers = pytest.importorskip("transformers")
    transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    code, _, err = run_cli(capsys, "run", "--model", f"hf:{tmp_path}")
    assert code == 2 and "model type 'gpt2' is not supported" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ recommend
def test_recommend_names_the_users_model(capsys, user_file):
    code, out, err = run_cli(capsys, "recommend", "--model", f"{user_file}:odd", "--dist", "uniform", "--max-len", "24",
                             "--batch-size", "4", "--quick", "--no-memory", "--no-progress", "--draws", "1",
                             "--strategies", "packed", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"]["model_source"] == f"{user_file}:odd" and doc["model"]["d_model"] == 36
    from padbench.recommend.snippets import header

    assert f"the nn.TransformerEncoder from {user_file}:odd" in header("packed", doc["model"])


@pytest.mark.parametrize("strategy", ["packed", "loop", "hf_sdpa"])
def test_hf_snippet_runs_and_matches_the_models_own_call(bert_dir, strategy):
    """The snippet `recommend` prints for an hf: model, run as printed on the user's BertModel."""
    transformers = pytest.importorskip("transformers")
    from padbench.recommend.snippets import model_snippet

    model = transformers.BertModel.from_pretrained(bert_dir).eval()
    lengths = [7, 3, 12]
    gen = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 97, (3, 12), generator=gen)
    attention_mask = (torch.arange(12)[None] < torch.tensor(lengths)[:, None]).long()
    with torch.no_grad():
        want = model(input_ids, attention_mask=attention_mask).last_hidden_state
    scope = {"model": model, "input_ids": input_ids, "attention_mask": attention_mask}
    with torch.no_grad():
        exec(model_snippet(strategy, "inference", {"model_kind": "hf", "model_source": f"hf:{bert_dir}"}), scope)
    got = scope["outs"] if "outs" in scope else [scope["out"][i, :n] for i, n in enumerate(lengths)]
    for i, n in enumerate(lengths):
        assert _norm_err(got[i], want[i, :n].double()) < 1e-5


def test_hf_padfree_says_why_it_cannot_run_here():
    """transformers' padding-free path is FlashAttention-2: CUDA, flash-attn, half precision."""
    pytest.importorskip("transformers")
    from padbench.strategies import names, strategy_class

    cls = strategy_class("hf_padfree")
    assert "hf_padfree" in names("hf") and "hf_padfree" not in names()
    assert "FlashAttention-2, a CUDA kernel" in cls.unsupported_reason("cpu", "inference", torch.float32)
    assert "float16 or bfloat16" in cls.unsupported_reason("cuda", "inference", torch.float32)
    rec = measure_case(Case("hf_padfree", "uniform", batch_size=2, max_len=8, model="hf:bert",
                            hf_config="num_hidden_layers=1,hidden_size=16,num_attention_heads=2,intermediate_size=24"),
                       memory=False)
    assert rec["status"] == "unsupported" and "CUDA kernel" in rec["message"], rec["message"]
    assert "hf:SOURCE" in cls.module_reason(torch.nn.Linear(2, 2))


def test_hf_padfree_packed_position_ids_need_flash_attention():
    """Why padbench does not offer the padding-free call on SDPA or eager: without FlashAttention the
    restarting position_ids do not separate the sequences (tokens attend across them)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    a, b = torch.randint(5, 1000, (7,)), torch.randint(5, 1000, (5,))
    pos = torch.tensor([list(range(7)) + list(range(5))])
    with torch.no_grad():
        ref = torch.cat([model(input_ids=s[None]).last_hidden_state[0] for s in (a, b)])
        for impl in ("sdpa", "eager"):
            model.set_attn_implementation(impl)
            out = model(input_ids=torch.cat([a, b])[None], position_ids=pos).last_hidden_state[0]
            assert float((out - ref).abs().max()) > 1e-4, impl


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("source", ["bert", "roberta"])
def test_hf_padfree_on_cuda_matches_the_model(source):
    """Where flash-attn is installed: transformers' padding-free call computes the model's function."""
    pytest.importorskip("transformers")
    from padbench.strategies.hf_padfree import flash_attn_missing

    if flash_attn_missing():
        pytest.skip(flash_attn_missing())
    from padbench.model import EncoderSpec

    rec = measure_case(Case("hf_padfree", "lognormal", device="cuda", batch_size=6, max_len=64, model=f"hf:{source}",
                            hf_config="num_hidden_layers=1,hidden_size=64,num_attention_heads=2,intermediate_size=128",
                            spec=EncoderSpec(dtype=torch.bfloat16)), min_run_time=0.01, max_run_time=0.05,
                       memory=False)
    assert rec["status"] == "ok" and judge.equivalent(rec), (judge.judge(rec), rec["message"])
