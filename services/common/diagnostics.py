"""Findings about the caller's input, in domain form: a skipped image, a lint finding, a plan warning.

Domain modules return these; servicers turn them into `tistudio.common.v1.Diagnostic` (same fields, and the
severity numbers match the proto enum). A diagnostic always says what to change, not only what is wrong.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

__all__ = ["Severity", "Diagnostic"]


class Severity(enum.IntEnum):
    INFO = 1  # worth knowing; nothing to change
    WARNING = 2  # probably hurts the result; the operation still runs
    ERROR = 3  # the operation cannot use this input until it is fixed


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    code: str  # stable UPPER_SNAKE_CASE, e.g. "TRUNCATED", "CAPTION_MISSING"
    message: str  # what is wrong, for a person
    suggestion: str = ""  # what to change
    field: str = ""  # the request field at fault ("options.size"), when one is
    key: str = ""  # the object at fault ("datasets/anna/raw/003.png"), when one is

    def for_key(self, key: str) -> Diagnostic:
        return replace(self, key=key)

    def to_dict(self) -> dict[str, str]:
        """JSON form for reports and manifests (severity by name)."""
        data = {"severity": self.severity.name.lower(), "code": self.code, "message": self.message}
        for name in ("suggestion", "field", "key"):
            if getattr(self, name):
                data[name] = getattr(self, name)
        return data
