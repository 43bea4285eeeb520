"""`check_hf`: the padding checks on a Hugging Face encoder's own padded call.

What users run is ``model(input_ids, attention_mask).last_hidden_state`` on ids a tokenizer
padded with ``pad_token_id``, so that is what is checked: the same checker as `check_padding`
(`driver.run_checks`), fed token ids (`inputs.make_token_batches`) instead of features. A model
is clean when its real tokens' hidden states and gradients ignore which ids sit in the pads
(pad_token_id, random ids, 0, the last id), how many pad columns there are, and a row that is
all padding (``attention_mask`` all zeros), with no NaN/Inf reaching them.

``hf:SOURCE`` is loaded by `padbench.models.hf_load`, as for ``padbench run --model``: a local
directory or a model type with seeded random weights, nothing downloaded, dropout off. A model
object (a ``BertModel`` you built) is checked as it is, dropout included.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import PadbenchError
from .driver import TORCH_MODES, run_checks
from .inputs import Batch, make_token_batches
from .report import CheckReport

#: attention implementations ``attn=`` can switch to (transformers' names)
ATTN = ("sdpa", "eager")


def hf_call(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The model's own call: ``model(input_ids=..., attention_mask=...)``, its last hidden state."""
    out = model(input_ids=batch.x.clone(), attention_mask=(~batch.mask).long())
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is None:
        raise PadbenchError(f"{type(model).__name__}(input_ids, attention_mask) returned no last_hidden_state: "
                            "check the base encoder (BertModel, not a model with a task head)")
    return hidden


def _load(source: str, hf_config: str):
    """(model, name, notes) for ``hf:SOURCE``, through `padbench.models.hf_load` (the one loader)."""
    from ..models import WEIGHT_SEED
    from ..models.hf_load import load

    source = source[3:] if source.startswith("hf:") else source
    if not source:
        raise PadbenchError("hf: needs a source: a local directory with config.json, or bert, roberta, distilbert")
    model, _, weights = load(source, hf_config or "", WEIGHT_SEED)
    notes = [f"weights {weights}; dropout off (hf: models are loaded with dropout 0, as for padbench run)"]
    return model, f"hf:{source}", notes


def _with_attn(model: nn.Module, attn: str | None) -> nn.Module:
    """``model``, or a copy switched to ``attn`` (the loaded model is shared: never switched in place)."""
    if attn is None or getattr(model.config, "_attn_implementation", None) == attn:
        return model
    if attn not in ATTN:
        raise PadbenchError(f"unknown attention implementation {attn!r}; expected one of {', '.join(ATTN)}")
    if not hasattr(model, "set_attn_implementation"):
        raise PadbenchError(f"{type(model).__name__} cannot switch its attention implementation")
    model = copy.deepcopy(model)
    model.set_attn_implementation(attn)
    return model


def _limit(config) -> int | None:
    """Tokens a sequence can hold: the position embeddings (RoBERTa's start after pad_token_id)."""
    from ..models.hf_load import FAMILIES

    family = FAMILIES.get(getattr(config, "model_type", None))
    if family is not None:
        return family.max_positions(config)
    return getattr(config, "max_position_embeddings", None)


def check_hf(
    source: str | nn.Module,
    *,
    hf_config: str = "",
    attn: str | None = None,
    lengths: Sequence[int] | None = None,
    batch_size: int = 4,
    max_len: int = 10,
    extra_len: int | None = None,
    seed: int = 0,
    modes: Sequence[str] = TORCH_MODES,
    dtype: torch.dtype | None = torch.float64,
    rtol: float | None = None,
    atol: float = 0.0,
    device: torch.device | str | None = None,
    num_threads: int | None = 1,
) -> CheckReport:
    """Check that padding does not leak into a Hugging Face encoder's own padded call.

    source: ``"hf:SOURCE"`` (or ``"SOURCE"``) as for ``--model hf:SOURCE``, with ``hf_config``
        overrides (``"key=value,..."``); or a model object with a ``config`` (``vocab_size``,
        ``pad_token_id``) whose call takes ``input_ids`` and ``attention_mask``.
    attn: ``"sdpa"`` or ``"eager"`` checks that attention implementation (default: the model's).

    The other arguments are `check_padding`'s; outputs are per token (``last_hidden_state``).
    Raises PadbenchError on bad input, in one line.
    """
    if isinstance(source, str):
        model, name, notes = _load(source, hf_config)
    elif isinstance(source, nn.Module):
        if hf_config:
            raise PadbenchError("hf_config applies to an hf:SOURCE string, not to a model object")
        model, name, notes = source, type(source).__name__, []
    else:
        raise PadbenchError(f"expected hf:SOURCE or a Hugging Face model, got {type(source).__name__}")
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None)
    if not isinstance(vocab, int) or vocab < 2:
        raise PadbenchError(f"{name}: expected a Hugging Face model whose config has a vocab_size")
    model = _with_attn(model, attn)
    pad_id = getattr(config, "pad_token_id", None)
    if pad_id is None:
        pad_id = 0
        notes.append("the config has no pad_token_id: pads hold id 0")
    if not 0 <= pad_id < vocab:
        raise PadbenchError(f"{name}: pad_token_id {pad_id} is outside the vocabulary (size {vocab})")
    limit = _limit(config)

    def check_lengths(lens: list, extra: int) -> None:
        if limit is not None and max(lens) + extra > limit:
            raise PadbenchError(f"{name} takes at most {limit} tokens a sequence (max_position_embeddings); "
                                f"{max(lens)} + {extra} appended pad columns exceed it: lower --max-len")

    report = run_checks(
        model, lambda lens, extra, _dtype, dev: make_token_batches(lens, extra, vocab, pad_id, seed, dev),
        call=hf_call, lengths=lengths, batch_size=batch_size, max_len=max_len, extra_len=extra_len, seed=seed,
        modes=modes, per_token=True, dtype=dtype, rtol=rtol, atol=atol, device=device, num_threads=num_threads,
        check_lengths=check_lengths)
    impl = getattr(model.config, "_attn_implementation", None)
    report.model = f"{name} ({type(model).__name__}" + (f", {impl} attention)" if impl else ")")
    report.notes.extend(notes)
    return report
