import warnings

import pytest
import torch
from pages import driver  # noqa: F401  (the browser fixture, shared from tests/pages.py)


@pytest.fixture(autouse=True)
def _quiet_prototype_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*nested tensors is in prototype.*")
        warnings.filterwarnings("ignore", message=".*is_fx_tracing.*")
        yield


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)
