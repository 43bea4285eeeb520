"""`padbench check`: does padding leak into *your* model?

A model that takes a padded batch ``x [B, L, d]`` plus ``key_padding_mask [B, L]``
(bool, True = pad) must compute, at every valid position (or for every sequence),
exactly what it would compute without the padding.  `check_padding` tests that
empirically, in both module modes (train and eval), on seeded inputs:

``pad_content``
    Refill every pad position with different, large (x100) seeded noise.  Outputs at
    valid positions (per-token models) or per-sequence outputs, and every parameter
    gradient of a loss over valid outputs only, must not change.
``appended_padding``
    Append more padding (``L -> L + extra`` columns of noise).  Same requirement.
``empty_sequence``
    Append one sequence of length 0 (a row that is all padding).  The other rows' outputs
    and the gradients must not change, and no NaN/Inf may appear.

A Hugging Face encoder is checked through its own call, ``model(input_ids, attention_mask)``,
with `check_hf` (``padbench check hf:SOURCE``): the same checks on token ids, pads holding
``pad_token_id`` and ``pad_content`` refilling them with random ids, id 0 and the last id
(`padbench.check.hf`).

Every forward/backward is also checked for NaN/Inf (check ``nonfinite``).  The report's
verdict (`padbench.check.report`) is ``leak`` when real tokens' outputs or gradients depend
on padding or turn NaN/Inf, ``hazard`` when NaN/Inf stays in the outputs of fully padded
rows (or at pads), ``clean`` otherwise.

Design decisions (and why)
--------------------------
* **float64 by default.**  The check runs on a deep copy of the model converted to
  float64.  Round-off then sits around 1e-15..1e-13 relative, while a leak through pads
  is O(1e-3..1) relative, so the tolerance (``rtol=1e-9``) has six orders of magnitude
  of room on each side.  In float32 a different padded length changes matmul/SDPA
  blocking and summation order, which moves results by ~1e-7..1e-6 relative;
  ``rtol=1e-4`` keeps clear of that while still catching any realistic leak.
  ``dtype=None`` runs the model in its own dtype.
* **Same weights, state and randomness for every forward** (`padbench.check.running`).
  Non-tensor Python state a model keeps on itself cannot be restored.
* **Dropout.**  With the same seed and the same input *shape*, dropout draws the same
  masks, so ``pad_content`` stays an exact comparison in train mode.  When the shape
  changes (``appended_padding``, ``empty_sequence``) the masks land on different
  elements; the check detects this empirically (same input, a different seed, different
  output) and reports those comparisons as *not applicable* in that mode; eval mode
  still covers them.  A forward not reproducible under a fixed seed is not applicable.
* **Full precision.**  TF32 is switched off and torch runs on one intra-op thread while
  checking; both are restored afterwards.
* **Eval is checked on two paths**: under ``torch.no_grad()`` (the inference path:
  ``nn.TransformerEncoder`` takes its fast path there) and with autograd enabled (for
  gradients).  Findings name the path.
* **Per-token or per-sequence** is detected by running two padded lengths: a per-token
  output has ``shape[:2] == (B, L)`` for both, a per-sequence output has the same
  ``[B, ...]`` shape for both (so ``B == L`` cannot fool it).  ``per_token=`` overrides.

Modules: `inputs` (the batches: features or token ids), `running` (the model's forwards),
`compare` (findings), `modes` (the checks in one module mode), `report` (report types and
verdict), `driver` (`check_padding`, `run_checks`), `hf` (`check_hf`).  `load_model` lives in
`padbench.user_model`, importable without the checker.
"""

from __future__ import annotations

from ..user_model import load_model
from .compare import GRAD_FLOOR
from .driver import CHECKS, TORCH_MODES, check_padding
from .hf import check_hf
from .report import CLEAN, HAZARD, LEAK, VERDICTS, CheckReport, Comparison, Violation

__all__ = [
    "CHECKS",
    "CLEAN",
    "GRAD_FLOOR",
    "HAZARD",
    "LEAK",
    "TORCH_MODES",
    "VERDICTS",
    "CheckReport",
    "Comparison",
    "Violation",
    "check_hf",
    "check_padding",
    "load_model",
]
