"""What a :class:`~stream_app.dedupe.index.DedupeIndex` keeps beside its store, read back from the store.

The LSH buckets (bucket id -> refs and tags, newest last) live in memory only, in a
:class:`~stream_app.dedupe.buckets.BucketIndex` rebuilt from the entries when the index is made (the entries
carry their bucket ids): one store write per new title instead of one per bucket. So does the expiry queue.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from stream_app.dedupe.buckets import BucketIndex
from stream_app.dedupe.entries import TitleEntry, entry_fields
from stream_app.dedupe.expiry import ExpiryQueue
from stream_app.dedupe.normalize import REF_CHARS, digest_of_ref, ref_number, ref_of
from stream_app.dedupe.signatures import BANDS, title_tags

BUCKET_LIMIT: Final = 8
"""Most refs kept in one bucket (the newest); bounds both an entry's size and the candidates per look-up."""


def index_buckets(store: MutableMapping[str, Any]) -> BucketIndex:
    """The LSH buckets of the first-seen titles in ``store``, filled in event-time order as they were live."""
    return scan(store)[0]


def scan(store: MutableMapping[str, Any]) -> tuple[BucketIndex, ExpiryQueue, list[str]]:
    """What a :class:`DedupeIndex` keeps beside ``store``, read from it: the LSH buckets, the expiry queue, and
    the keys of entries of no known shape (nothing this package wrote), to delete."""
    # One compact column per field, not an object per entry: a worker that joins its group scans the whole index
    # it loaded (a million entries and more), and objects per entry would cost it several times the index's memory.
    times, numbers, tags = array("d"), array("Q"), array("H")
    buckets, titles = bytearray(), bytearray()
    hashes: list[bytes] = []  # word hashes of the entries read since their tags were made (a near copy: none)
    unreadable: list[str] = []
    items = store.numbered_items() if isinstance(store, NumberedStore) else _numbered(store, unreadable)
    for number, value in items:
        entry = entry_fields(value)
        if entry is None:
            unreadable.append(ref_of(number))
            continue
        times.append(entry.event_time)
        numbers.append(number)
        if isinstance(entry, TitleEntry):
            buckets += entry.buckets
            hashes.append(entry.hashes)
            titles.append(1)
        else:
            buckets += _NO_BUCKETS
            hashes.append(b"")
            titles.append(0)
        if len(hashes) == _CHUNK:
            tags.extend(title_tags(hashes))
            hashes.clear()
    tags.extend(title_tags(hashes))
    refs, event_times = np.frombuffer(numbers, np.uint64), np.frombuffer(times, np.float64)
    order = np.lexsort((ref_order(refs), event_times))  # by time, then by ref as text
    queue = ExpiryQueue()
    for begin in range(0, len(order), _CHUNK):
        chunk = order[begin : begin + _CHUNK]
        for event_time, number in zip(event_times[chunk].tolist(), refs[chunk].tolist(), strict=True):
            queue.push(event_time, number)
    order = order[np.frombuffer(titles, np.uint8)[order].astype(bool)]
    return _bucket_index(buckets, refs, np.frombuffer(tags, np.uint16), order), queue, unreadable


@runtime_checkable
class NumberedStore(Protocol):
    """A store that hands out its entries keyed by ref number (:func:`~stream_app.dedupe.normalize.ref_number`):
    every key it holds is a ref, so :func:`scan` reads it without turning each key into text and back."""

    def numbered_items(self) -> Iterable[tuple[int, Any]]: ...


def _numbered(store: MutableMapping[str, Any], unreadable: list[str]) -> Iterator[tuple[int, Any]]:
    """``store``'s entries keyed by ref number; the keys that are no ref go to ``unreadable``."""
    for ref, value in store.items():
        if digest_of_ref(ref) is None:
            unreadable.append(ref)
        else:
            yield ref_number(ref), value


def _bucket_index(
    buckets: bytearray, refs: npt.NDArray[np.uint64], tags: npt.NDArray[np.uint16], order: npt.NDArray[np.intp]
) -> BucketIndex:
    """The LSH buckets of the titles at ``order`` (oldest first) among the entries whose packed ``buckets``, refs
    and tags are given, built one band at a time. A band's bucket ids share their top byte, so the bands sorted
    apart and laid end to end are the whole index sorted, and only one band's working arrays are held at once."""
    refs, tags, titles = refs[order], tags[order], len(order)
    ids = np.empty(titles * BANDS, np.uint32)
    kept_refs, kept_tags = np.empty(titles * BANDS, np.uint64), np.empty(titles * BANDS, np.uint16)
    packed = np.frombuffer(buckets, np.uint8).reshape(-1, BANDS, 3)
    for band in range(BANDS):
        hashed = packed[order, band]
        band_ids = np.uint32(band << 24) | hashed[:, 0].astype(np.uint32) << 16 | hashed[:, 1].astype(np.uint32) << 8
        band_ids |= hashed[:, 2]
        by_id = np.argsort(band_ids, kind="stable")
        at = slice(band * titles, (band + 1) * titles)
        ids[at], kept_refs[at], kept_tags[at] = band_ids[by_id], refs[by_id], tags[by_id]
    return BucketIndex.from_sorted(BUCKET_LIMIT, (ids, kept_refs, kept_tags))


_NO_BUCKETS: Final = bytes(BANDS * 3)
_CHUNK: Final = 65_536
_REF_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_CHAR_RANK: Final = np.argsort(np.argsort(np.frombuffer(_REF_ALPHABET, np.uint8))).astype(np.uint64)
"""For each 6-bit value, the rank of the character a ref writes it as, in the order of text."""
_LAST_RANK: Final = np.zeros(64, np.uint64)
_LAST_RANK[np.arange(0, 64, 4)] = np.argsort(np.argsort(_CHAR_RANK[::4])).astype(np.uint64)
"""The same for a ref's last character, which carries 4 bits: 16 values, ranked among themselves."""


def ref_order(numbers: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """For each ref number (:func:`~stream_app.dedupe.normalize.ref_number`), a key that sorts as its ref's text
    does: the ranks of its ten 6-bit characters and the 4 bits of its last one."""
    key = np.zeros(len(numbers), np.uint64)
    for position in range(REF_CHARS - 1):
        shift = np.uint64(64 - 6 * (position + 1))
        key = (key << np.uint64(6)) | _CHAR_RANK[(numbers >> shift) & np.uint64(0x3F)]
    ordered: npt.NDArray[np.uint64] = (key << np.uint64(4)) | _LAST_RANK[(numbers & np.uint64(0xF)) << np.uint64(2)]
    return ordered
