"""padbench's own attention op over packed variable-length sequences (see `varlen_attention`)."""

from padbench.kernels.varlen_attention import (
    BACKENDS,
    backend_available,
    cpu_implementation,
    reference_varlen_attention,
    varlen_attention,
)

__all__ = ["varlen_attention", "reference_varlen_attention", "backend_available", "cpu_implementation", "BACKENDS"]
