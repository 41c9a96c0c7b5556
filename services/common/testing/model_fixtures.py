"""pytest plugin: the deterministic tiny models, built at most once per session.

`tiny_models` -> {"sd": Path, "sd_single_file": Path, "blip": Path, "clip": Path}. It reuses `<repo>/models/`
when `make models` built it with the current BUILD_VERSION (stamp present), and otherwise builds into a session temp
folder, so a bare `pytest` on a fresh clone works too (a build takes a few seconds). Treat the files as read-only:
copy before editing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.models.tiny import build_tiny_models, is_current_build, tiny_model_paths

REPO_MODELS = Path(__file__).resolve().parents[3] / "models"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if is_current_build(REPO_MODELS):
        return tiny_model_paths(REPO_MODELS)
    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))
