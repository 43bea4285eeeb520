"""How to adopt a strategy: a short snippet per strategy, given ``encoder``, ``x [B, L, d]`` and a bool ``mask``.

Every snippet is run in the tests against the encoder's own per-sequence output.
"""

from __future__ import annotations

SNIPPETS = {
    "padded": """\
# keep what you have: pad to the batch max with a bool mask (True = pad)
out = encoder(x, src_key_padding_mask=mask)               # [B, L, d]; ignore pad positions
""",
    "bucketed": """\
# sort by length and pad only within buckets of similar length (better still: a
# length-grouped sampler in your DataLoader, so every batch is one bucket)
import torch
lengths = (~mask).sum(1)
out = torch.zeros_like(x)
for idx in torch.argsort(lengths).chunk(4):               # 4 buckets
    width = int(lengths[idx].max())
    out[idx, :width] = encoder(x[idx, :width], src_key_padding_mask=mask[idx, :width])
""",
    "nested_fastpath": """\
# nn.TransformerEncoder's nested-tensor fast path (inference only): build the encoder with
# enable_nested_tensor=True (the default; batch_first=True, norm_first=False, even nhead,
# relu/gelu), run it in eval mode without grad, and pass a bool src_key_padding_mask
import torch
encoder.eval()
with torch.no_grad():
    out = encoder(x, src_key_padding_mask=mask)           # [B, L, d]; pad positions come back as 0
""",
    "jagged": """\
# a jagged nested tensor (NJT) through Linear, LayerNorm and SDPA
from padbench.batch import VarlenBatch
from padbench.strategies import get
batch = VarlenBatch.from_padded(x, mask)                  # real tokens packed [T, d] + offsets
out = get("jagged", encoder)(batch)                       # [T, d], valid positions only
per_seq = out.split(batch.lengths_list)                   # one [L_i, d] tensor per sequence
""",
    "loop": """\
# one sequence at a time, no padding at all
import torch
lengths = (~mask).sum(1).tolist()
outs = [encoder(x[i : i + 1, :n])[0] for i, n in enumerate(lengths)]   # [L_i, d] each
out = torch.cat(outs)                                     # [T, d]
""",
    "packed": """\
# padbench's packed strategy: dense layers on the real tokens only, varlen attention over offsets
from padbench.batch import VarlenBatch
from padbench.strategies import get
packed = get("packed", encoder)                           # same weights as `encoder`
batch = VarlenBatch.from_padded(x, mask)                  # real tokens packed [T, d] + offsets
out = packed(batch)                                       # [T, d], valid positions only
per_seq = out.split(batch.lengths_list)                   # one [L_i, d] tensor per sequence
""",
    "flex": """\
# compiled FlexAttention with a document mask over the packed tokens; compilation is not in
# the timing and happens again for every new total token count T (pad T to a few sizes)
from padbench.batch import VarlenBatch
from padbench.strategies import get
batch = VarlenBatch.from_padded(x, mask)
out = get("flex", encoder)(batch)                         # [T, d], valid positions only
""",
    "varlen_attn": """\
# torch.nn.attention.varlen (FlashAttention varlen) over packed tokens: CUDA, fp16/bf16
from padbench.batch import VarlenBatch
from padbench.strategies import get
batch = VarlenBatch.from_padded(x, mask)                  # x on the GPU in float16/bfloat16
out = get("varlen_attn", encoder)(batch)                  # [T, d], valid positions only
""",
    "rowpacked": """\
# padbench's rowpacked: the batch's sequences packed first-fit-decreasing into rows (as long as
# the batch's longest sequence; row_len=512 for fixed rows), SDPA with a block-diagonal mask per row
from padbench.batch import VarlenBatch
from padbench.strategies import strategy_class
rowpacked = strategy_class("rowpacked")(encoder)          # or (encoder, row_len=512)
batch = VarlenBatch.from_padded(x, mask)                  # real tokens packed [T, d] + offsets
out = rowpacked(batch)                                    # [T, d], valid positions only
""",
}

# `padbench recommend --epoch`: the model side of a pair, on what the policy's loader yields
# (`padbench.epoch.loaders`). A padded policy's loader yields `x, mask`: the snippets above.
EPOCH_VARLEN = """\
# `{strategy}` on the loader's packed tokens (tokens [T, d], cu_seqlens [n + 1]): no padding anywhere
from padbench.batch import VarlenBatch
from padbench.strategies import get
lengths = cu_seqlens.diff().tolist()
batch = VarlenBatch(tokens, cu_seqlens.long().to(tokens.device), tuple(lengths))
out = get("{strategy}", encoder)(batch)                   # [T, d]; out.split(lengths): one per sequence
"""

EPOCH_ROWS = """\
# the loader's rows (x [R, row_len, d], segment [R, row_len]) through your encoder, as `rowpacked`
# runs them: every slot through the layers, attention only within a sequence (block-diagonal
# mask; a free slot sees only itself); models with position embeddings take `position` as ids
import torch
slot = torch.arange(segment.shape[1], device=segment.device)
same = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
blocked = ~(same | (slot[:, None] == slot[None, :]))      # True = may not attend
heads = encoder.layers[0].self_attn.num_heads
out = encoder(x, mask=blocked.repeat_interleave(heads, 0))[segment >= 0]   # [T, d], in row order
"""


HF_OWN = {
    "hf_sdpa": """\
# keep what you have: the model's own padded call (SDPA attention, transformers' default)
out = model(input_ids, attention_mask=attention_mask).last_hidden_state   # [B, L, hidden]
""",
    "hf_eager": """\
# the model's own padded call with eager attention
model.set_attn_implementation("eager")
out = model(input_ids, attention_mask=attention_mask).last_hidden_state   # [B, L, hidden]
""",
}

HF_PADBENCH = """\
# padbench's `{strategy}` on your model's own weights (copied once, again when they change): word,
# position (restarting at each sequence) and token type embeddings, then the encoder layers
from padbench.models.hf import packed_forward
seqs = [ids[:n] for ids, n in zip(input_ids, attention_mask.sum(1).tolist())]   # real tokens only
model.eval()
outs = packed_forward(model, seqs{extra})   # one [L_i, hidden] tensor per sequence
"""


def header(strategy: str, model: dict | None = None) -> str:
    """What the snippet for ``strategy`` is given, for the model that was measured."""
    kind = (model or {}).get("model_kind", "spec")
    if kind == "hf":
        return (f"how to use `{strategy}` (given `model`, your {model['model_source'][3:]} model, `input_ids` [B, L] "
                "and `attention_mask` [B, L], 1 = real token):")
    who = f"`encoder`, the nn.TransformerEncoder from {model['model_source']}" if kind == "user" else "`encoder`"
    return f"how to use `{strategy}` (given {who}, `x` [B, L, d] and a bool `mask` [B, L], True = pad):"


def model_snippet(strategy: str, mode: str = "inference", model: dict | None = None) -> str:
    """`snippet` for the measured model: a Hugging Face model gets its own call or `packed_forward`."""
    if (model or {}).get("model_kind") != "hf":
        return snippet(strategy, mode)
    if strategy in HF_OWN:
        return HF_OWN[strategy]
    text = HF_PADBENCH.format(strategy=strategy, extra="" if strategy == "packed" else f", strategy={strategy!r}")
    if mode == "training":
        text += ("# training: packed_forward runs inference only (no gradients reach `model`); "
                 "padbench measured training on padbench.models.hf.convert(model, ...) (docs/models.md)\n")
    return text


def snippet(strategy: str, mode: str = "inference") -> str:
    """How to adopt ``strategy``, given ``encoder``, ``x [B, L, d]`` and a bool ``mask [B, L]`` (True = pad)."""
    text = SNIPPETS.get(strategy, f"from padbench.strategies import get\nout = get({strategy!r}, encoder)(batch)\n")
    if mode == "training" and strategy not in ("padded", "nested_fastpath"):
        text += "# training: compute the loss on the valid outputs only, then loss.backward()\n"
    elif mode == "inference" and strategy not in ("nested_fastpath",):
        text = "# inference: run under torch.no_grad() (or torch.inference_mode())\n" + text
    return text


def epoch_model_snippet(shape: str, strategy: str, mode: str = "inference", model: dict | None = None) -> str:
    """The model side of a (policy, strategy) pair, given what a batch of the policy's loader is:
    ``x, mask`` (shape ``padded``), ``x, segment, position`` (``rows``) or ``tokens, cu_seqlens`` (``varlen``).

    A Hugging Face model takes token ids: its snippet is `model_snippet`'s, on the batch's sequences."""
    if (model or {}).get("model_kind") == "hf":
        lead = "" if shape == "padded" else (
            f"# a {shape} batch of token ids: pad its sequences into input_ids / attention_mask, or pass them as "
            "the list `seqs` below\n")
        return lead + model_snippet(strategy, mode, model)
    if shape == "padded":
        return snippet(strategy, mode)
    text = EPOCH_ROWS if shape == "rows" else EPOCH_VARLEN.format(strategy=strategy)
    if mode == "training":
        return text + "# training: compute the loss on `out` (real tokens only), then loss.backward()\n"
    return "# inference: run under torch.no_grad() (or torch.inference_mode())\n" + text
