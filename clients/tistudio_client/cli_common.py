"""What every service command of the `tistudio` CLI shares: the connection options, opening the SDK client,
enum flags, and printing (plain text for people, JSON for scripts).

Connection options go after the command (`tistudio jobs --trainer host:50052 --json`); each falls back to its
environment variable, then to the loopback default that `tistudio up` uses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from tistudio.common.v1 import common_pb2
from tistudio_client.calls import QUICK_TIMEOUT
from tistudio_client.client import Tistudio

__all__ = [
    "DEFAULT_ADDRESSES",
    "LazyChoices",
    "connection_options",
    "open_client",
    "enum_choices",
    "enum_name",
    "to_dict",
    "print_json",
    "print_json_line",
    "diagnostic_lines",
    "has_errors",
    "split_embedding",
    "write_stderr",
]

DEFAULT_ADDRESSES = {"caption": "127.0.0.1:50051", "trainer": "127.0.0.1:50052", "preview": "127.0.0.1:50053"}


class LazyChoices:
    """argparse `choices` computed on first use, so building the parser imports nothing heavy (the recipe table
    lives beside the training engine, which imports torch)."""

    def __init__(self, load: Callable[[], list[str]]) -> None:
        self._load = load
        self._values: list[str] | None = None

    def _get(self) -> list[str]:
        if self._values is None:
            self._values = list(self._load())
        return self._values

    def __contains__(self, value: object) -> bool:
        return value in self._get()

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def connection_options() -> argparse.ArgumentParser:
    """A parent parser with --caption/--trainer/--preview, --token, --store, --json and --timeout."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    for name, address in DEFAULT_ADDRESSES.items():
        env = f"TISTUDIO_{name.upper()}_ADDRESS"
        group.add_argument(f"--{name}", metavar="HOST:PORT", help=f"{name} service (env {env}, default {address})")
    group.add_argument("--token", help="bearer token (env TISTUDIO_TOKEN)")
    group.add_argument("--store", metavar="URL", help="the services' store (env TISTUDIO_STORE_URL)")
    group.add_argument("--json", action="store_true", help="print JSON for scripts")
    group.add_argument("--timeout", type=float, metavar="SECONDS", help=f"deadline per call (default {QUICK_TIMEOUT})")
    return parent


def open_client(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Tistudio:
    """The SDK client for the flags given: flag > TISTUDIO_* variable > loopback default."""
    addresses = {
        name: getattr(args, name, None) or env.get(f"TISTUDIO_{name.upper()}_ADDRESS") or default
        for name, default in DEFAULT_ADDRESSES.items()
    }
    overrides: dict[str, Any] = dict(addresses)
    if args.token:
        overrides["token"] = args.token
    if args.store:
        overrides["store_url"] = args.store
    if args.timeout is not None:
        overrides["timeout"] = args.timeout
    return Tistudio.from_env(env, **overrides)


def enum_choices(enum_type: Any, prefix: str) -> dict[str, int]:
    """{"dpmpp-2m-karras": SAMPLER_DPMPP_2M_KARRAS, ...}: the enum's values as flag words, UNSPECIFIED left out."""
    return {
        name[len(prefix) :].lower().replace("_", "-"): value
        for name, value in enum_type.items()
        if not name.endswith("_UNSPECIFIED")
    }


def enum_name(enum_type: Any, value: int, prefix: str) -> str:
    """The flag word for an enum value ("succeeded" for JOB_STATE_SUCCEEDED)."""
    try:
        return enum_type.Name(value)[len(prefix) :].lower().replace("_", "-")
    except ValueError:
        return str(value)


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def print_json(value: Any) -> None:
    if isinstance(value, Message):
        value = to_dict(value)
    print(json.dumps(value, indent=2))


def print_json_line(value: Any) -> None:
    if isinstance(value, Message):
        value = to_dict(value)
    print(json.dumps(value), flush=True)


def diagnostic_lines(diagnostics: Any, indent: str = "  ") -> list[str]:
    """One line per diagnostic ("WARNING CODE: message [key]"), its suggestion on the next."""
    lines = []
    for d in diagnostics:
        severity = common_pb2.Severity.Name(d.severity).removeprefix("SEVERITY_")
        where = f" [{d.key or d.field}]" if (d.key or d.field) else ""
        lines.append(f"{indent}{severity} {d.code}: {d.message}{where}")
        if d.suggestion:
            lines.append(f"{indent}    -> {d.suggestion}")
    return lines


def has_errors(diagnostics: Any) -> bool:
    return any(d.severity == common_pb2.SEVERITY_ERROR for d in diagnostics)


def split_embedding(value: str) -> dict[str, Any]:
    """KEY[:TRIGGER] as an EmbeddingRef's fields (store keys cannot hold ':', so the last one splits)."""
    key, _, trigger = value.rpartition(":") if ":" in value else (value, "", "")
    return {"file": {"key": key}, "trigger": trigger}


def write_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
