"""Helpers shared by the dedupe tests: an index over a dict, stores that count or record, sample titles."""

from __future__ import annotations

import copy
from collections.abc import Iterator, MutableMapping
from typing import Any

from hypothesis import strategies as st

from stream_app.dedupe import DedupeIndex, entry_fields

DAY = 86400.0
titles = st.text(alphabet=st.characters(categories=("L", "N", "Zs", "P")), min_size=1, max_size=60)
words = st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=12)
# Punctuation that cannot spell a source decoration ("| Reddit", "[P]", "Show HN:") or an HTML character reference
# ("&amp;") when put between words.
punctuation_runs = st.text(alphabet=" .,;!?*/()'\"+#@\t", min_size=1, max_size=4).filter(lambda s: s.strip())


ORIGINAL = "Graph neural networks for molecular property prediction"
DESCRIPTION = "We train a message passing network on QM9 and compare it with fingerprints."


def index(store: MutableMapping[str, Any] | None = None, ttl: float = 30 * DAY) -> DedupeIndex:
    return DedupeIndex({} if store is None else store, ttl)


def stored_id(value: Any) -> str:
    fields = entry_fields(value)
    assert fields is not None, value
    return str(fields[0])


class ReadCountingStore(dict[str, Any]):
    """A dict that counts the entries read, one by one or by iterating."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)

    def __iter__(self) -> Iterator[str]:
        self.reads += len(self)
        return super().__iter__()


class RecordingStore(MutableMapping[str, Any]):
    """A dict that keeps a deep copy of every value assigned, to catch in-place mutation."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.assigned: dict[str, Any] = {}
        self.writes = 0

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.assigned[key] = copy.deepcopy(value)
        self.writes += 1

    def __delitem__(self, key: str) -> None:
        del self.data[key]
        del self.assigned[key]
        self.writes += 1

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)
