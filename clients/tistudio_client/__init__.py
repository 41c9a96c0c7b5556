"""Python client side of tistudio: the SDK (`Tistudio`), the `tistudio` CLI, health checks, a local trio.

    from tistudio_client import Tistudio, errors
    with Tistudio.from_env() as ts:
        job = ts.trainer.get_job(job_id="...").job

The SDK names are imported lazily, so `python -m tistudio_client.cli serve` does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Tistudio", "RetryPolicy", "TistudioError", "errors"]

_LAZY = {
    "Tistudio": ("tistudio_client.client", "Tistudio"),
    "RetryPolicy": ("tistudio_client.calls", "RetryPolicy"),
    "TistudioError": ("tistudio_client.errors", "TistudioError"),
    "errors": ("tistudio_client.errors", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tistudio_client' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)
