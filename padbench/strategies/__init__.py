"""Registered batching strategies: `names(model_kind)`, `get(name, encoder)`.

Imported in the order tables list them: the baseline first, library anchors last. Modules named
in ``$PADBENCH_PLUGINS`` (a comma list, importable from ``sys.path``/``PYTHONPATH``) are imported
after them: their ``@register``-ed strategies run like padbench's own, in every process a sweep
starts (isolated workers, memory probes) as well, since those read the same variable.
"""

from . import padded, bucketed, nested_fastpath, jagged, loop, packed, rowpacked  # noqa: F401,I001  (register, in order)
from . import flex, varlen_attn  # noqa: F401,I001
from . import hf_padded  # noqa: F401,I001  (a Hugging Face model's own call: hf: models only)
from . import hf_padfree  # noqa: F401,I001  (transformers' padding-free call: hf: models, CUDA + flash-attn)
from .base import DEVICES, MODES, Strategy, get, names, register, strategy_class

__all__ = ["DEVICES", "MODES", "Strategy", "get", "names", "register", "strategy_class"]


def _load_plugins() -> None:
    import importlib
    import os

    for name in filter(None, (m.strip() for m in os.environ.get("PADBENCH_PLUGINS", "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"PADBENCH_PLUGINS names {name!r}, which cannot be imported: {exc}") from exc


_load_plugins()
