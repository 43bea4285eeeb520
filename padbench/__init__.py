"""padbench: which way of batching variable-length sequences through a transformer encoder
is fastest for your lengths, what it costs in memory, and whether it computes the same thing."""

__version__ = "0.1.0"

from .batch import VarlenBatch  # noqa: E402
from .errors import PadbenchError, UnsupportedError  # noqa: E402
from .model import EncoderSpec  # noqa: E402

__all__ = ["EncoderSpec", "PadbenchError", "UnsupportedError", "VarlenBatch", "__version__"]
