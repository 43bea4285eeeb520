"""`EncoderSpec`: the one encoder function every strategy computes.

`build(seed)` returns the reference ``nn.TransformerEncoder`` (batch_first, dropout 0) with
seeded weights. `nn.TransformerEncoder` deep-copies one layer, so every layer would start
identical; padbench re-draws every parameter per layer (biases and LayerNorm affine included,
non-zero) so a strategy that mixes up layers or drops a bias cannot pass equivalence.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .errors import PadbenchError

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_dtype(dtype) -> torch.dtype:
    """A supported torch dtype from a dtype or its name ("float32" or "torch.float32")."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise PadbenchError(f"unsupported dtype {dtype}; choose one of {', '.join(DTYPES)}")
        return dtype
    name = dtype_name(dtype)
    if name not in DTYPES:
        raise PadbenchError(f"unsupported dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype) -> str:
    """The name results record for a dtype ("float32"), given a torch dtype or a name of one."""
    return str(dtype).replace("torch.", "")


@dataclass(frozen=True)
class EncoderSpec:
    d_model: int = 256
    nhead: int = 4
    dim_feedforward: int = 1024
    num_layers: int = 2
    # gelu, not torch's relu default: relu's kink makes float32 gradients differ from float64
    # ones wherever a pre-activation rounds across zero (~1e-2 on a 32 x 256 batch, in every
    # strategy, torch's own loop included), which would hide real gradient bugs.
    activation: str = "gelu"
    norm_first: bool = False
    dtype: torch.dtype = torch.float32

    def __post_init__(self):
        for name in ("d_model", "nhead", "dim_feedforward", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PadbenchError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.nhead:
            raise PadbenchError(f"d_model {self.d_model} is not divisible by nhead {self.nhead}")
        if self.activation not in ("relu", "gelu"):
            raise PadbenchError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")
        object.__setattr__(self, "dtype", parse_dtype(self.dtype))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.nhead

    def as_dict(self) -> dict:
        d = asdict(self)
        d["dtype"] = dtype_name(self.dtype)
        return d

    def build(self, seed: int = 0, device: str | torch.device = "cpu") -> nn.TransformerEncoder:
        layer = nn.TransformerEncoderLayer(
            self.d_model,
            self.nhead,
            self.dim_feedforward,
            dropout=0.0,
            activation=self.activation,
            batch_first=True,
            norm_first=self.norm_first,
        )
        with warnings.catch_warnings():
            # norm_first makes torch warn that the nested path is off; nested_fastpath reports that itself.
            warnings.simplefilter("ignore", UserWarning)
            encoder = nn.TransformerEncoder(layer, self.num_layers, enable_nested_tensor=True)
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for name, p in encoder.named_parameters():
                if p.dim() >= 2:
                    p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
                elif "norm" in name and name.endswith("weight"):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        return encoder.to(device=device, dtype=self.dtype)
