"""Iteration helpers missing from Python 3.11's standard library."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["batched"]

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """`itertools.batched` of Python 3.12: tuples of `size` items, the last one shorter."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch
