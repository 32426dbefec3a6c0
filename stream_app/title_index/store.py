"""The title index's memory: its entries packed in numpy arrays and one byte arena, not a dict, and the store the
dedupe writes to over them, which records each change for the index's topic.

A dict of 8-byte keys and ~50-byte values costs about 170 B per title in Python objects; here a title costs its
value's bytes and 16 bytes of index. Keys are the 8-byte digests of titles' dedupe keys.
"""

from __future__ import annotations

import binascii
from array import array
from bisect import bisect_left
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Final, cast

import numpy as np

from stream_app.dedupe import ref_of_digest

KEY_BYTES: Final = 8
RECENT_LIMIT: Final = 4096
"""Writes held in a dict before they are merged into the sorted arrays: a merge copies the arrays, so fewer
writes per merge cost more in all but pause the worker for less."""

_UNWRITTEN = object()


def _digests(keys: list[bytes]) -> np.ndarray:
    """The keys as unsigned 64-bit numbers."""
    return np.frombuffer(b"".join(keys), ">u8").astype(np.uint64)


class PackedTitles(MutableMapping[bytes, bytes]):
    """A mapping of 8-byte keys to bytes: keys sorted in arrays (digest, value offset and length), values in one
    ``bytearray``, recent writes in a small dict until the next merge."""

    def __init__(self, recent_limit: int = RECENT_LIMIT) -> None:
        self.recent_limit = recent_limit
        self.clear()

    def clear(self) -> None:
        """Remove every entry."""
        # Python arrays, not numpy ones: reading one element of them is several times faster.
        self._digests = array("Q")
        self._offsets = array("I")
        self._lengths = array("I")
        self._arena = bytearray()
        self._garbage = 0
        """Bytes of the arena no packed entry points to any more."""
        self._recent: dict[bytes, bytes | None] = {}
        """Writes and deletions (None) since the last merge; they hide the packed entries."""

    def _find(self, key: bytes) -> int:
        """The index of ``key`` in the packed arrays, -1 if it is not there."""
        digest, digests = int.from_bytes(key, "big"), self._digests
        index = bisect_left(digests, digest)
        return index if index < len(digests) and digests[index] == digest else -1

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        """The value under ``key``, or ``default``: a miss costs no exception, and most look-ups of a new title
        miss."""
        recent: object = self._recent.get(key, _UNWRITTEN)
        if recent is not _UNWRITTEN:
            return default if recent is None else cast(bytes, recent)
        index = self._find(key) if len(key) == KEY_BYTES else -1
        if index < 0:
            return default
        offset = self._offsets[index]
        return bytes(self._arena[offset : offset + self._lengths[index]])

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise KeyError(f"keys are {KEY_BYTES} bytes, not {len(key)}")
        self._recent[bytes(key)] = bytes(value)
        if len(self._recent) >= self.recent_limit:
            self._merge()

    def __delitem__(self, key: bytes) -> None:
        if key not in self:
            raise KeyError(key)
        self._recent[bytes(key)] = None
        if len(self._recent) >= self.recent_limit:
            self._merge()

    def __len__(self) -> int:
        """The number of entries (it looks the recent writes up in the arrays: about a millisecond)."""
        keys = list(self._recent)
        packed = self._positions(_digests(keys)) >= 0
        written = np.array([value is not None for value in self._recent.values()], bool)
        return len(self._digests) - int((packed & ~written).sum()) + int((written & ~packed).sum())

    @property
    def nbytes(self) -> int:
        """Bytes of the packed arrays and the arena (the recent writes' dict not counted)."""
        arrays = (self._digests, self._offsets, self._lengths)
        return sum(a.itemsize * len(a) for a in arrays) + len(self._arena)

    def __iter__(self) -> Iterator[bytes]:
        recent = dict(self._recent)  # the packed arrays are replaced, never changed in place, by a merge
        for digest in self._digests:
            key = digest.to_bytes(KEY_BYTES, "big")
            if key not in recent:
                yield key
        yield from [key for key, value in recent.items() if value is not None]

    def numbered_items(self) -> Iterator[tuple[int, bytes]]:
        """Every entry as (its key read as a big-endian number, its value), off the arrays in one pass: no look-up
        per key, for a reader of the whole mapping."""
        recent = dict(self._recent)
        shadowed = {int.from_bytes(key, "big") for key in recent}
        arena = self._arena  # a compaction replaces it, and a merge only appends to it
        for digest, offset, length in zip(self._digests, self._offsets, self._lengths, strict=True):
            if digest not in shadowed:
                yield digest, bytes(arena[offset : offset + length])
        yield from [(int.from_bytes(key, "big"), value) for key, value in recent.items() if value is not None]

    def _merge(self) -> None:
        """Fold the recent writes into the sorted arrays, dropping the entries they replace or delete."""
        recent, self._recent = self._recent, {}
        new_digests = _digests(list(recent))
        digests, lengths = np.frombuffer(self._digests, np.uint64), np.frombuffer(self._lengths, np.uint32)
        keep = np.ones(len(digests), bool)
        positions = self._positions(new_digests)
        replaced = positions[positions >= 0]
        keep[replaced] = False
        self._garbage += int(lengths[replaced].sum())

        values = list(recent.values())
        written = np.flatnonzero([value is not None for value in values])
        written = written[np.argsort(new_digests[written], kind="stable")]
        written_values = [cast(bytes, values[i]) for i in written.tolist()]
        new_lengths = np.array([len(value) for value in written_values], np.uint32)
        new_offsets = len(self._arena) + np.cumsum(new_lengths, dtype=np.uint64) - new_lengths
        self._arena += b"".join(written_values)
        at = np.searchsorted(digests[keep] if len(replaced) else digests, new_digests[written])

        def merged(old: np.ndarray, new: np.ndarray) -> bytes:
            return np.insert(old[keep] if len(replaced) else old, at, new.astype(old.dtype)).tobytes()

        self._digests = array("Q", merged(digests, new_digests[written]))
        self._offsets = array("I", merged(np.frombuffer(self._offsets, np.uint32), new_offsets))
        self._lengths = array("I", merged(lengths, new_lengths))
        if self._garbage > len(self._arena) // 2:
            self._compact_arena()

    def _positions(self, digests: np.ndarray) -> np.ndarray:
        """The index in the packed arrays of each of ``digests``, -1 for those not there."""
        packed = np.frombuffer(self._digests, np.uint64)
        if not len(packed) or not len(digests):
            return np.full(len(digests), -1, np.intp)
        at = np.minimum(np.searchsorted(packed, digests), len(packed) - 1)
        return np.where(packed[at] == digests, at, -1)

    def _compact_arena(self) -> None:
        """Copy the live values into a new arena (deletions and replacements leave their old bytes behind)."""
        arena, old, offsets = bytearray(), self._arena, array("I")
        for offset, length in zip(self._offsets, self._lengths, strict=True):
            offsets.append(len(arena))
            arena += old[offset : offset + length]
        self._arena, self._offsets, self._garbage = arena, offsets, 0


@dataclass(frozen=True)
class IndexChange:
    """One change of the index, as its topic carries it: the title's digest and its entry, or None (deleted)."""

    key: bytes
    value: bytes | None


_URLSAFE = bytes.maketrans(b"-_", b"+/")


def digest_key(ref: str) -> bytes:
    """The 8-byte digest a ref (:func:`~stream_app.dedupe.ref_of_digest`) stands for, decoded without the
    round-trip check of :func:`~stream_app.dedupe.digest_of_ref`: every ref here was made by ``ref_of_digest``."""
    return binascii.a2b_base64(ref.encode().translate(_URLSAFE) + b"=")


class _Unrecorded:
    """:meth:`RefStore.unrecorded`: a plain context manager, not a generator's, as it is entered for every record
    applied from the topic."""

    __slots__ = ("store",)

    def __init__(self, store: RefStore) -> None:
        self.store = store

    def __enter__(self) -> None:
        self.store.recording = False

    def __exit__(self, *_: object) -> None:
        self.store.recording = True


class RefStore(MutableMapping[str, bytes]):
    """The index's entries keyed by ref, in :class:`PackedTitles`; while :attr:`recording`, every write and delete
    is also appended to :attr:`changes`."""

    def __init__(self) -> None:
        self.titles = PackedTitles()
        self.changes: list[IndexChange] = []
        self.recording = True
        self._unrecorded = _Unrecorded(self)

    def unrecorded(self) -> _Unrecorded:
        """Write without recording: for changes that came from the topic."""
        return self._unrecorded

    def __getitem__(self, ref: str) -> bytes:
        return self.titles[digest_key(ref)]

    def get(self, ref: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        return self.titles.get(digest_key(ref), default)

    def __setitem__(self, ref: str, value: bytes) -> None:
        key = digest_key(ref)
        self.titles[key] = value
        if self.recording:
            self.changes.append(IndexChange(key, value))

    def __delitem__(self, ref: str) -> None:
        key = digest_key(ref)
        del self.titles[key]
        if self.recording:
            self.changes.append(IndexChange(key, None))

    def __iter__(self) -> Iterator[str]:
        for key in self.titles:
            yield ref_of_digest(key)

    def __len__(self) -> int:
        return len(self.titles)

    def numbered_items(self) -> Iterator[tuple[int, bytes]]:
        """Every entry as (its ref's number, its value): :class:`~stream_app.dedupe.rebuild.NumberedStore`."""
        return self.titles.numbered_items()

    def take_changes(self) -> list[IndexChange]:
        """The changes recorded since the last call."""
        changes, self.changes = self.changes, []
        return changes
