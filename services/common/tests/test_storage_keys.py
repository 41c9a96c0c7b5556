"""The storage key rules: what is accepted, and that every rejection names the key and what to change."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.common.storage import InvalidStorageKey, validate_key, validate_prefix
from services.common.storage.keys import MAX_KEY_BYTES, is_valid_key

ACCEPTED = [
    "a",
    "model.safetensors",
    "datasets/cats/001.png",
    "runs/2024-05-01T10=00/step_000100 (copy).pt",
    "users/me@example.com/a+b,c~d.txt",
    "données/été/naïve.txt",
    "模型/权重.bin",
    "Ünïcödé ünd spaces/x",
    "a.b.c/d..e",  # dots inside a name are fine; only "." and ".." segments are not
    "x" * MAX_KEY_BYTES,
    "é" * (MAX_KEY_BYTES // 2),  # 2 bytes each in UTF-8
]

# (key, words the message must contain besides the key itself)
REJECTED = [
    ("", "empty"),
    ("/abs/path", "remove the leading '/'"),
    ("folder/", "remove the trailing '/'"),
    ("a//b", "'//'"),
    ("a/../b", "'..'"),
    ("./a", "'.'"),
    ("..", "'..'"),
    (".hidden", "reserved"),
    ("a/.tistudio-tmp/x", "reserved"),
    ("a\\b", "backslash"),
    ("a\nb", "control character"),
    ("tab\there", "control character"),
    ("nul\x00", "control character"),
    ("del\x7f", "control character"),
    ("a/ b", "space"),
    ("a /b", "space"),
    ("what?", "'?'"),
    ("a:b", "':'"),
    ("100%", "'%'"),
    ("star*", "'*'"),
    ("emoji😀", "U+1F600"),
    ("x" * (MAX_KEY_BYTES + 1), "1025 bytes"),
    ("é" * (MAX_KEY_BYTES // 2 + 1), "1026 bytes"),
]


@pytest.mark.parametrize("key", ACCEPTED)
def test_accepted_keys(key: str) -> None:
    assert validate_key(key) == key
    assert is_valid_key(key)


@pytest.mark.parametrize(("key", "words"), REJECTED)
def test_rejected_keys_name_the_key_and_the_fix(key: str, words: str) -> None:
    with pytest.raises(InvalidStorageKey) as caught:
        validate_key(key, field="key")
    message = str(caught.value)
    assert repr(key) in message
    assert words in message
    assert caught.value.reason == "INVALID_STORAGE_KEY"
    assert caught.value.field == "key"
    assert isinstance(caught.value, InvalidArgument)
    assert not is_valid_key(key)


@pytest.mark.parametrize("key", [None, 3, b"bytes"])
def test_non_string_keys_are_rejected(key: object) -> None:
    with pytest.raises(InvalidStorageKey, match="must be a string"):
        validate_key(key)


@pytest.mark.parametrize("prefix", ["", "a", "a/", "datasets/cats/", "datasets/ca", "données/"])
def test_accepted_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize(
    ("prefix", "words"),
    [
        ("/", "leading '/'"),
        ("/a/", "leading '/'"),
        ("a//", "'//'"),
        ("../", "'..'"),
        (".tistudio-tmp/", "reserved"),
        ("a\\", "backslash"),
        ("a\x01/", "control character"),
    ],
)
def test_rejected_prefixes_name_the_prefix(prefix: str, words: str) -> None:
    with pytest.raises(InvalidStorageKey) as caught:
        validate_prefix(prefix)
    assert repr(prefix) in str(caught.value)
    assert words in str(caught.value)
