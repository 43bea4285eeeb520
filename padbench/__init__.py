"""padbench: which way of batching variable-length sequences through a transformer encoder
is fastest for your lengths, what it costs in memory, and whether it computes the same thing."""

__version__ = "0.1.0"

from .batch import VarlenBatch  # noqa: E402
from .errors import PadbenchError, UnsupportedError  # noqa: E402
from .model import EncoderSpec  # noqa: E402

__all__ = ["EncoderSpec", "check_padding", "PadbenchError", "UnsupportedError", "VarlenBatch", "__version__"]


def __getattr__(name):
    # `padbench.check_padding` without importing the checker on every `import padbench`.
    if name == "check_padding":
        from .check import check_padding

        return check_padding
    raise AttributeError(f"module 'padbench' has no attribute {name!r}")
