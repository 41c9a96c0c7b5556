"""Settings as plain JSON values: for records written beside results (manifests, ledgers, settings snapshots)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

__all__ = ["plain_record"]


def plain_record(value: Any) -> Any:
    """Dataclasses become dicts (field order kept), enums their values, tuples lists; other values pass through."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_record(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain_record(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain_record(item) for key, item in value.items()}
    return value
