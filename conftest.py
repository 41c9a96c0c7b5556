"""Fixtures shared by every test layer, kept in plugins next to the code they exercise."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "services.common.testing.s3_fixtures",
    "services.common.testing.model_fixtures",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU-marked tests skip themselves where no CUDA device is present (this machine, CI)."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
