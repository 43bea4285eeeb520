"""Load the user's own model from a ``MODULE:CALLABLE`` target.

Its own module, so that every command taking the user's model (``padbench check`` today) loads
it the same way without importing the code that uses it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

from torch import nn

from .errors import PadbenchError, describe

__all__ = ["describe", "load_model"]


def _is_path(mod_name: str) -> bool:
    return mod_name.endswith(".py") or os.sep in mod_name or bool(os.altsep and os.altsep in mod_name)


def _import_file(mod_name: str):
    path = os.path.abspath(mod_name)
    if not os.path.isfile(path):
        raise PadbenchError(f"no such file: {mod_name}")
    name = "_padbench_user_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PadbenchError(f"cannot import {mod_name}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module


def _import(mod_name: str):
    try:
        if _is_path(mod_name):
            return _import_file(mod_name)
        cwd = os.getcwd()
        if cwd not in sys.path:   # `padbench` is an entry point: the user's cwd is not on sys.path
            sys.path.insert(0, cwd)
        return importlib.import_module(mod_name)
    except PadbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - importing user code can raise anything
        raise PadbenchError(f"cannot import {mod_name}: {describe(exc)}") from None


def load_model(target: str) -> nn.Module:
    """``MODULE:CALLABLE`` -> ``CALLABLE()``; MODULE is a dotted module (cwd is importable) or a .py path."""
    mod_name, sep, attr = target.rpartition(":")
    if not sep or not mod_name or not attr:
        raise PadbenchError(
            f"expected MODULE:CALLABLE (e.g. mypkg.models:build or path/to/file.py:build), got {target!r}")
    obj: Any = _import(mod_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PadbenchError(f"{mod_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise PadbenchError(f"{target} is not callable (it is a {type(obj).__name__})")
    try:
        model = obj()
    except Exception as exc:  # noqa: BLE001 - the user's factory can raise anything
        raise PadbenchError(f"calling {target}() failed: {describe(exc)}") from None
    if not isinstance(model, nn.Module):
        raise PadbenchError(f"{target}() returned {type(model).__name__}, expected a torch.nn.Module")
    return model
