"""Fixtures shared by the trainer's tests."""

from __future__ import annotations

import pytest

from services.trainer.engine.testing import tiny_components


@pytest.fixture(scope="module")
def components(tiny_models):
    """The tiny SD1.x components, loaded once per test module (tests must not modify them)."""
    return tiny_components(tiny_models["sd"])
