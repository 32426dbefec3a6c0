"""The one way the worker keeps a bounded record of the newest entries: an ordered dict, oldest forgotten first."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")


def remember(entries: OrderedDict[_K, _V], key: _K, value: _V, limit: int) -> None:
    """Set ``key`` to ``value`` as the newest of ``entries``; past ``limit`` entries, the oldest are forgotten."""
    entries[key] = value
    entries.move_to_end(key)
    while len(entries) > limit:
        entries.popitem(last=False)
