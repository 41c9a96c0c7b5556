"""Storage keys: the one place that decides which object names are allowed.

A key names an object relative to a store's root, the same way on every backend, so that a dataset written to a
local directory can be copied to S3 unchanged. The rules:

- segments are separated by "/"; the key does not start with "/" (no absolute paths) and does not end with "/"
  (a key names an object, not a folder);
- every segment is non-empty (no "//"), is not "." or "..", does not start with "." (hidden names are reserved
  for the store's own temporary files), and does not start or end with a space;
- characters allowed: Unicode letters and digits (`str.isalnum`), space, and `. _ - + = @ , ~ ( )`; anything
  else, notably backslash and control characters, is rejected;
- at most 1024 bytes once encoded as UTF-8 (the S3 limit).

Keys are compared as exact code point sequences: no case folding and no Unicode normalisation.

A list prefix follows the same rules, except that it may be "" (everything) or end with "/" (one folder).
"""

from __future__ import annotations

from services.common.errors import InvalidArgument

__all__ = ["MAX_KEY_BYTES", "InvalidStorageKey", "validate_key", "validate_prefix", "is_valid_key"]

MAX_KEY_BYTES = 1024
_ALLOWED_PUNCTUATION = frozenset("._-+=@,~() ")
_ALLOWED_TEXT = "letters, digits, space and . _ - + = @ , ~ ( )"


class InvalidStorageKey(InvalidArgument):
    reason = "INVALID_STORAGE_KEY"


def validate_key(key: object, *, field: str | None = None) -> str:
    """Return `key` unchanged if it is a valid object key; raise `InvalidStorageKey` saying what to change."""
    problem = _key_problem(key, what="key")
    if problem is not None:
        raise InvalidStorageKey(problem, field=field, metadata={"key": key})
    return key  # type: ignore[return-value]  # _key_problem checked it is a str


def validate_prefix(prefix: object, *, field: str | None = None) -> str:
    """Return `prefix` unchanged if it is "" or a valid key prefix (which may end with "/")."""
    if prefix == "":
        return ""
    body = prefix[:-1] if isinstance(prefix, str) and prefix.endswith("/") and prefix != "/" else prefix
    problem = _key_problem(body, what="prefix", shown=prefix)
    if problem is not None:
        raise InvalidStorageKey(problem, field=field, metadata={"prefix": prefix})
    return prefix  # type: ignore[return-value]


def is_valid_key(key: object) -> bool:
    """True when `key` passes `validate_key`; used to skip foreign files when listing."""
    return _key_problem(key, what="key") is None


def _key_problem(key: object, *, what: str, shown: object = None) -> str | None:
    """The first rule `key` breaks, as a message that names it and says what to change; None when it is valid."""
    shown = key if shown is None else shown
    if not isinstance(key, str):
        return f"storage {what} must be a string, got {type(key).__name__} {shown!r}"
    head = f"storage {what} {shown!r}"
    if key == "":
        return f"{head} is empty; give the object's path relative to the store, e.g. 'datasets/cats/001.png'"
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        return f"{head} is {size} bytes long in UTF-8; shorten it to at most {MAX_KEY_BYTES} bytes"
    if "\\" in key:
        return f"{head} contains a backslash; separate folders with '/' instead"
    if key.startswith("/"):
        return f"{head} starts with '/'; keys are relative to the store root, remove the leading '/'"
    if key.endswith("/"):
        if what == "prefix":
            return f"{head} contains an empty segment ('//'); remove the doubled '/'"
        return f"{head} ends with '/'; a key names an object, not a folder: remove the trailing '/'"
    for position, char in enumerate(key):
        if not (char.isalnum() or char in _ALLOWED_PUNCTUATION or char == "/"):
            kind = "control character" if _is_control(char) else "character"
            return (
                f"{head} contains the {kind} {char!r} (U+{ord(char):04X}) at position {position}; "
                f"only {_ALLOWED_TEXT} are allowed, with '/' between folders"
            )
    for segment in key.split("/"):
        if segment == "":
            return f"{head} contains an empty segment ('//'); remove the doubled '/'"
        if segment in (".", ".."):
            return f"{head} contains the segment {segment!r}; relative segments are not allowed, spell the path out"
        if segment.startswith("."):
            return (
                f"{head} has the segment {segment!r} starting with '.'; such names are reserved for the store's "
                "temporary files, rename it (e.g. drop the leading '.')"
            )
        if segment != segment.strip(" "):
            return f"{head} has the segment {segment!r} starting or ending with a space; remove that space"
    return None


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0
