"""The version string tistudio writes into embedding metadata, savepoint settings and PNG infotext."""

from __future__ import annotations

import importlib.metadata

__all__ = ["tool_version"]


def tool_version() -> str:
    """ "tistudio 0.1.0" when installed (the venv installs it editable), "tistudio (source)" otherwise."""
    try:
        return f"tistudio {importlib.metadata.version('tistudio')}"
    except importlib.metadata.PackageNotFoundError:
        return "tistudio (source)"
