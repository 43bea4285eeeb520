"""padbench's own attention op over packed variable-length sequences (see `varlen_attention`)."""

from padbench.kernels.varlen_attention import (
    BACKENDS,
    backend_available,
    reference_varlen_attention,
    varlen_attention,
)

__all__ = ["varlen_attention", "reference_varlen_attention", "backend_available", "BACKENDS"]
