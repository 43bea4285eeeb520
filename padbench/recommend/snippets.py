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
}


def snippet(strategy: str, mode: str = "inference") -> str:
    """How to adopt ``strategy``, given ``encoder``, ``x [B, L, d]`` and a bool ``mask [B, L]`` (True = pad)."""
    text = SNIPPETS.get(strategy, f"from padbench.strategies import get\nout = get({strategy!r}, encoder)(batch)\n")
    if mode == "training" and strategy not in ("padded", "nested_fastpath"):
        text += "# training: compute the loss on the valid outputs only, then loss.backward()\n"
    elif mode == "inference" and strategy not in ("nested_fastpath",):
        text = "# inference: run under torch.no_grad() (or torch.inference_mode())\n" + text
    return text
