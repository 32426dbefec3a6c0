"""The title table's ``memory://`` store: its entries packed in numpy arrays and one byte arena, not a dict.

A dict of 10-byte keys and ~50-byte values costs about 170 B per title in Python objects; here a title costs its
value's bytes and 17 bytes of index. Keys of the 10-byte :func:`title_key` form (a zero byte,
the partition, 8 bytes of digest) are packed; any other key lives in a plain dict beside them.
"""

from __future__ import annotations

import binascii
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, cast

import numpy as np
from faust.stores import memory
from faust.types import TP, EventT

from stream_app.dedupe import REF_CHARS, ref_of_digest

PACKED_KEY_BYTES = 10
RECENT_LIMIT = 4096
"""Writes held in a dict before they are merged into the sorted arrays: a merge copies the arrays (about 15 ms
at 1,000,000 titles), so fewer writes per merge cost more in all but pause the worker for less."""


_UNWRITTEN = object()


def _packable(key: bytes) -> bool:
    """Whether ``key`` is in :func:`title_key`'s binary form (the form the arrays keep)."""
    return len(key) == PACKED_KEY_BYTES and key[0] == 0


def title_key(partition: int, ref: str) -> bytes:
    """The title table key of ``ref`` in ``partition``: a zero byte, the partition and the 8 bytes ``ref`` encodes
    (10 bytes, in memory and on the wire) when the partition is below 256 and ``ref`` decodes to 8 bytes, else
    ``"<partition>/<ref>"``.

    Called for every table access, so ``ref`` is decoded but not checked to be canonical (0.17 µs; with
    :func:`digest_of_ref`, which re-encodes it, 0.75 µs): refs made by :func:`ref_of_digest` are, and
    :func:`split_title_key` hides keys whose ref would not map back to them.
    """
    if partition < 256 and len(ref) == REF_CHARS:
        try:
            return _KEY_PREFIXES[partition] + binascii.a2b_base64(
                ref.encode().translate(_URLSAFE) + b"=", strict_mode=True
            )
        except ValueError:  # not base64 (binascii.Error), or a lone surrogate (UnicodeEncodeError)
            pass
    return f"{partition}/{ref}".encode()


_KEY_PREFIXES = [bytes([0, partition]) for partition in range(256)]
_URLSAFE = bytes.maketrans(b"-_", b"+/")


def split_title_key(key: bytes) -> tuple[int, str] | None:
    """``(partition, ref)`` of a title table key; None if it is not one :func:`title_key` gives."""
    if _packable(key):
        return key[1], ref_of_digest(key[2:])
    partition, slash, ref = key.decode(errors="replace").partition("/")
    if not (slash and partition.isdigit()) or title_key(int(partition), ref) != key:
        return None
    return int(partition), ref


def key_partition(key: bytes) -> int | None:
    """The partition a title table key names: its second byte, or the number before ``/``; None if neither.
    Unlike :func:`split_title_key` it takes text keys :func:`title_key` would now write in binary (an older
    version's), which still belong to a partition."""
    if _packable(key):
        return key[1]
    partition, slash, _ = key.partition(b"/")
    return int(partition) if slash and partition.isdigit() else None


def _split_keys(keys: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The digests (as unsigned 64-bit numbers) and partitions of packable keys."""
    digests = np.frombuffer(b"".join(key[2:] for key in keys), ">u8").astype(np.uint64)
    return digests, np.frombuffer(b"".join(key[1:2] for key in keys), np.uint8)


class PackedTitles(MutableMapping[bytes, bytes]):
    """A mapping of bytes to bytes: packable keys sorted in numpy arrays (digest, partition, value offset and
    length), values in one ``bytearray``, recent writes in a small dict until the next merge."""

    def __init__(self, recent_limit: int = RECENT_LIMIT) -> None:
        self.recent_limit = recent_limit
        self.clear()

    def clear(self) -> None:
        """Remove every entry."""
        # Python arrays, not numpy ones: reading one element of them is several times faster.
        self._digests = array("Q")
        self._partitions = bytearray()
        self._offsets = array("I")
        self._lengths = array("I")
        self._arena = bytearray()
        self._garbage = 0
        """Bytes of the arena no packed entry points to any more."""
        self._recent: dict[bytes, bytes | None] = {}
        """Writes and deletions (None) of packable keys since the last merge; they hide the packed entries."""
        self._other: dict[bytes, bytes] = {}

    def _find(self, key: bytes) -> int:
        """The index of ``key`` in the packed arrays, -1 if it is not there."""
        digest, digests = int.from_bytes(key[2:], "big"), self._digests
        index = bisect_left(digests, digest)
        while index < len(digests) and digests[index] == digest:
            if self._partitions[index] == key[1]:
                return index
            index += 1
        return -1

    def _packed_value(self, index: int) -> bytes:
        offset = self._offsets[index]
        return bytes(self._arena[offset : offset + self._lengths[index]])

    def __getitem__(self, key: bytes) -> bytes:
        if not _packable(key):
            return self._other[key]
        recent = self._recent.get(key, _UNWRITTEN)
        if recent is None:
            raise KeyError(key)
        if recent is not _UNWRITTEN:
            return cast(bytes, recent)
        index = self._find(key)
        if index < 0:
            raise KeyError(key)
        return self._packed_value(index)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if not _packable(key):
            self._other[key] = value
            return
        self._recent[key] = bytes(value)
        if len(self._recent) >= self.recent_limit:
            self._merge()

    def __delitem__(self, key: bytes) -> None:
        if not _packable(key):
            del self._other[key]
        else:
            if key not in self:
                raise KeyError(key)
            self._recent[key] = None
            if len(self._recent) >= self.recent_limit:
                self._merge()

    def __len__(self) -> int:
        """The number of entries (it looks the recent writes up in the arrays: about a millisecond)."""
        keys = list(self._recent)
        packed = self._positions(keys, *_split_keys(keys)) >= 0
        written = np.array([value is not None for value in self._recent.values()], bool)
        return len(self._digests) - int((packed & ~written).sum()) + int((written & ~packed).sum()) + len(self._other)

    @property
    def nbytes(self) -> int:
        """Bytes of the packed arrays and the arena (the recent writes' dict and other keys not counted)."""
        arrays = (self._digests, self._offsets, self._lengths)
        return sum(a.itemsize * len(a) for a in arrays) + len(self._partitions) + len(self._arena)

    def __iter__(self) -> Iterator[bytes]:
        recent = dict(self._recent)  # the packed arrays are replaced, never changed in place, by a merge
        for digest, partition in zip(self._digests, self._partitions, strict=True):
            key = _KEY_PREFIXES[partition] + digest.to_bytes(8, "big")
            if key not in recent:
                yield key
        yield from [key for key, value in recent.items() if value is not None]
        yield from list(self._other)

    def _merge(self) -> None:
        """Fold the recent writes into the sorted arrays, dropping the entries they replace or delete."""
        recent, self._recent = self._recent, {}
        keys = list(recent)
        new_digests, new_partitions = _split_keys(keys)
        digests, lengths = np.frombuffer(self._digests, np.uint64), np.frombuffer(self._lengths, np.uint32)
        keep = np.ones(len(digests), bool)
        positions = self._positions(keys, new_digests, new_partitions)
        replaced = positions[positions >= 0]
        keep[replaced] = False
        self._garbage += int(lengths[replaced].sum())

        values = list(recent.values())
        written = np.flatnonzero([value is not None for value in values])
        written = written[np.lexsort((new_partitions[written], new_digests[written]))]
        written_values = [cast(bytes, values[i]) for i in written.tolist()]
        new_lengths = np.array([len(value) for value in written_values], np.uint32)
        new_offsets = len(self._arena) + np.cumsum(new_lengths, dtype=np.uint64) - new_lengths
        self._arena += b"".join(written_values)
        at = np.searchsorted(digests[keep] if len(replaced) else digests, new_digests[written])

        def merged(old: np.ndarray, new: np.ndarray) -> bytes:
            return np.insert(old[keep] if len(replaced) else old, at, new.astype(old.dtype)).tobytes()

        self._digests = array("Q", merged(digests, new_digests[written]))
        self._partitions = bytearray(merged(np.frombuffer(self._partitions, np.uint8), new_partitions[written]))
        self._offsets = array("I", merged(np.frombuffer(self._offsets, np.uint32), new_offsets))
        self._lengths = array("I", merged(lengths, new_lengths))
        if self._garbage > len(self._arena) // 2:
            self._compact_arena()

    def keep_partitions(self, partitions: set[int]) -> None:
        """Drop the entries of every other partition (keys naming none are kept)."""
        if self._recent:
            self._merge()
        kept = np.isin(np.frombuffer(self._partitions, np.uint8), list(partitions))
        lengths = np.frombuffer(self._lengths, np.uint32)
        self._garbage += int(lengths[~kept].sum())
        self._digests = array("Q", np.frombuffer(self._digests, np.uint64)[kept].tobytes())
        self._partitions = bytearray(np.frombuffer(self._partitions, np.uint8)[kept].tobytes())
        self._offsets = array("I", np.frombuffer(self._offsets, np.uint32)[kept].tobytes())
        self._lengths = array("I", lengths[kept].tobytes())
        for key in [key for key in self._other if key_partition(key) not in (*partitions, None)]:
            del self[key]
        if self._garbage > len(self._arena) // 2:
            self._compact_arena()

    def _positions(self, keys: list[bytes], digests: np.ndarray, partitions: np.ndarray) -> np.ndarray:
        """The index in the packed arrays of each of ``keys`` (split into ``digests`` and ``partitions``), -1 for
        those not there."""
        packed = np.frombuffer(self._digests, np.uint64)
        if not len(packed) or not keys:
            return np.full(len(keys), -1, np.intp)
        at = np.empty(len(digests), np.intp)
        order = np.argsort(digests)  # sorted needles: the binary searches walk the array in order
        at[order] = np.minimum(np.searchsorted(packed, digests[order]), len(packed) - 1)
        same_digest = packed[at] == digests
        found = same_digest & (np.frombuffer(self._partitions, np.uint8)[at] == partitions)
        positions = np.where(found, at, -1)
        # A digest also stored for another partition may sort first: look those up one by one.
        for i in np.flatnonzero(same_digest & ~found).tolist():
            positions[i] = self._find(keys[i])
        return positions

    def _compact_arena(self) -> None:
        """Copy the live values into a new arena (deletions and replacements leave their old bytes behind)."""
        arena, old, offsets = bytearray(), self._arena, array("I")
        for offset, length in zip(self._offsets, self._lengths, strict=True):
            offsets.append(len(arena))
            arena += old[offset : offset + length]
        self._arena, self._offsets, self._garbage = arena, offsets, 0


class TitleStore(memory.Store[bytes, bytes]):
    """Faust's ``memory://`` store over :class:`PackedTitles`.

    It also finds the partition of a key in the key itself, where Faust's keeps a second dict of every key
    recovered from the changelog (about 100 B more per title after a restart).
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.titles = PackedTitles()
        self.data = self.titles

    def apply_changelog_batch(self, batch: Iterable[EventT[Any]], to_key: Any, to_value: Any) -> None:
        """Apply changelog records: a value written, or a deletion (a record without a value)."""
        data = self.data
        for event in batch:
            key = to_key(event.key)
            if event.message.value is None:
                data.pop(key, None)
            else:
                data[key] = to_value(event.value)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Drop the entries of partitions this worker no longer serves."""
        self.titles.keep_partitions({partition for _, partition in active_tps})
