"""What a :class:`~stream_app.dedupe.index.DedupeIndex` keeps beside its store, read back from the store.

The LSH buckets (bucket id -> refs and tags, newest last) live in memory only, in a
:class:`~stream_app.dedupe.buckets.BucketIndex` rebuilt from the entries when the index is made (the entries
carry their bucket ids): one store write per new title instead of one per bucket. So does the expiry queue.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Final

import numpy as np

from stream_app.dedupe.buckets import BucketIndex
from stream_app.dedupe.entries import TitleEntry, entry_fields
from stream_app.dedupe.expiry import ExpiryQueue
from stream_app.dedupe.normalize import digest_of_ref, ref_number
from stream_app.dedupe.signatures import BANDS, title_tags

BUCKET_LIMIT: Final = 8
"""Most refs kept in one bucket (the newest); bounds both an entry's size and the candidates per look-up."""


def index_buckets(store: MutableMapping[str, Any]) -> BucketIndex:
    """The LSH buckets of the first-seen titles in ``store``, filled in event-time order as they were live."""
    return scan(store)[0]


def scan(store: MutableMapping[str, Any]) -> tuple[BucketIndex, ExpiryQueue, list[str]]:
    """What a :class:`DedupeIndex` keeps beside ``store``, read from it: the LSH buckets, the expiry queue, and
    the keys of entries of no known shape (nothing this package wrote), to delete."""
    entries, unreadable = [], []
    for ref, value in store.items():
        entry = entry_fields(value) if digest_of_ref(ref) is not None else None
        if entry is None:
            unreadable.append(ref)
        else:
            fields = (entry.buckets, entry.hashes) if isinstance(entry, TitleEntry) else (b"", b"")
            entries.append((entry.event_time, ref, *fields))
    entries.sort()
    queue = ExpiryQueue()
    for event_time, ref, *_ in entries:
        queue.push(event_time, ref_number(ref))
    titles = [(ref, buckets, hashes) for _, ref, buckets, hashes in entries if buckets]
    packed = np.frombuffer(b"".join(buckets for _, buckets, _ in titles), np.uint8).reshape(-1, BANDS, 3)
    hashes = packed.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)
    ids = (hashes | (np.arange(BANDS, dtype=np.uint32) << 24)).reshape(-1)
    refs = np.repeat(np.array([ref_number(ref) for ref, _, _ in titles], np.uint64), BANDS)
    tags = np.repeat(title_tags([hashes for _, _, hashes in titles]), BANDS)
    return BucketIndex.from_entries(BUCKET_LIMIT, ids.astype(np.uint32), refs, tags), queue, unreadable
