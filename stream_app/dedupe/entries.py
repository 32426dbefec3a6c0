"""The store's entries: what is kept of each title, as one ``bytes`` value, and how it is read back.

The store holds two kinds of entries, each one ``bytes`` value (one small Python object per title, and no more
than a title needs on disk), replaced and never mutated (Faust writes the changelog only on assignment). Keys
are ``<ref>``, the dedupe key in 11 base64url characters (:func:`~stream_app.dedupe.normalize.ref_of_digest`):

* a first-seen title: a head byte (``0b1`` + described flag + number of words, up to 63), the event time in
  seconds (4 bytes), its 4 LSH buckets (3 bytes each), the description's MinHash (12 values of 4 bits, if
  it has one), the sorted :func:`~stream_app.dedupe.signatures.word_hash` of each word (3 bytes each, repeats
  included), then the event id;
* a near copy found: ``0x01``, the event time (4 bytes), the similarity (2 bytes, in 1/10,000), the original's
  ref (8 bytes), then the original's event id. A replayed copy (after a crash) or a copy of the copy gets the
  same verdict even when the original has since left its capped LSH buckets.

:func:`entry_fields` reads both; it is the only format (the service was never released with another).
"""

from __future__ import annotations

import math
from typing import Any, Final, NamedTuple

from stream_app.dedupe.normalize import REF_BYTES, ref_of_digest, unb64
from stream_app.dedupe.signatures import BANDS, DESCRIPTION_HASHES, WORD_HASH_BYTES
from stream_app.schema import MAX_ID_CHARS

_BUCKET_HASH_BYTES: Final = 3
_TIME_BYTES: Final = 4
"""Event times are kept in whole seconds, rounded up (an entry may outlive its TTL by under a second), until the
year 2106; times outside that range are clamped into it."""
_LAST_SECOND: Final = 2 ** (8 * _TIME_BYTES) - 1
TITLE_MARK: Final = 0x80
_DESCRIBED: Final = 0x40
WORDS: Final = 0x3F
"""Head-byte bits of a title entry (``WORDS``: its number of words, and the most whose hashes it keeps)."""
_COPY_MARK: Final = 0x01
_WHOLE: Final = 10_000
"""A similarity of 1, as stored (in 1/10,000)."""


class TitleEntry(NamedTuple):
    """A first-seen title, as stored."""

    event_id: str
    event_time: float
    hashes: bytes
    """The sorted :func:`word_hash` of each word; empty for a title of more than 63 words."""
    signature: bytes
    """Its :func:`description_signature`, as stored."""
    buckets: bytes
    """Its :func:`bucket_ids`, 3 bytes each without the band number."""


class CopyEntry(NamedTuple):
    """A near copy found, as stored."""

    original_id: str
    event_time: float
    original_ref: str
    similarity: float


Entry = TitleEntry | CopyEntry


def clamp_time(event_time: float) -> float:
    """An event time within what an entry can store (0 to 2**32 - 1 seconds; NaN counts as 0)."""
    if 0.0 < event_time <= _LAST_SECOND:
        return float(event_time)
    event_time = float(event_time)
    if not event_time > 0:  # NaN too
        return 0.0
    return min(event_time, float(_LAST_SECOND))


def whole_seconds(event_time: float) -> int:
    """An event time as stored: whole seconds, rounded up (an entry outlives its TTL by under a second), clamped
    into the 4 bytes an entry has for it."""
    return math.ceil(clamp_time(event_time))


def _seconds(event_time: float) -> bytes:
    return whole_seconds(event_time).to_bytes(_TIME_BYTES, "big")


def title_bytes(event_id: str, event_time: float, hashes: bytes, signature: bytes, buckets: list[int]) -> bytes:
    """A title entry's value, its buckets given as :func:`bucket_ids`."""
    head = TITLE_MARK | (_DESCRIBED if signature else 0) | len(hashes) // WORD_HASH_BYTES
    packed = 0
    for bucket in buckets:
        packed = packed << 8 * _BUCKET_HASH_BYTES | bucket & 0xFFFFFF
    return b"".join(
        [
            bytes([head]),
            _seconds(event_time),
            packed.to_bytes(BANDS * _BUCKET_HASH_BYTES, "big"),
            signature,
            hashes,
            event_id.encode(),
        ]
    )


def copy_value(entry: CopyEntry) -> bytes:
    """A near copy's entry value."""
    similarity = round(entry.similarity * _WHOLE).to_bytes(2, "big")
    return b"".join(
        [
            bytes([_COPY_MARK]),
            _seconds(entry.event_time),
            similarity,
            unb64(entry.original_ref),
            entry.original_id.encode(),
        ]
    )


def entry_fields(value: Any) -> Entry | None:
    """A stored value read: a :class:`TitleEntry`, a :class:`CopyEntry`, or None for anything else (never
    raises: values may come from a topic anyone can write to).

    What no worker writes reads as nothing too: an event id longer than an event's may be (it would make the
    duplicate record of every later copy too large to publish) and a similarity above 1."""
    if not isinstance(value, bytes) or not value:
        return None
    try:
        entry: Entry
        if value[0] & TITLE_MARK:
            entry = _read_title(value)
            named_id = entry.event_id
        elif value[0] == _COPY_MARK:
            time_end = 1 + _TIME_BYTES
            if len(value) <= time_end + 2 + REF_BYTES:
                return None
            similarity = int.from_bytes(value[time_end : time_end + 2], "big")
            if similarity > _WHOLE:
                return None
            entry = CopyEntry(
                value[time_end + 2 + REF_BYTES :].decode(),
                float(int.from_bytes(value[1:time_end], "big")),
                ref_of_digest(value[time_end + 2 : time_end + 2 + REF_BYTES]),
                similarity / _WHOLE,
            )
            named_id = entry.original_id
        else:
            return None
    except ValueError:  # an event id that is not UTF-8
        return None
    return entry if len(named_id) <= MAX_ID_CHARS else None


def _read_title(value: bytes) -> TitleEntry:
    head = value[0]
    time_end = 1 + _TIME_BYTES
    hashes_at = time_end + BANDS * _BUCKET_HASH_BYTES
    signature_at = hashes_at
    if head & _DESCRIBED:
        hashes_at += DESCRIPTION_HASHES // 2
    id_at = hashes_at + (head & WORDS) * WORD_HASH_BYTES
    if len(value) <= id_at:
        raise ValueError("a title entry cut short")
    return TitleEntry(
        value[id_at:].decode(),
        float(int.from_bytes(value[1:time_end], "big")),
        value[hashes_at:id_at],
        value[signature_at:hashes_at],
        value[time_end : time_end + BANDS * _BUCKET_HASH_BYTES],
    )


def unpack_buckets(packed: bytes) -> list[int]:
    """The bucket ids of a title entry's packed buckets (3 bytes each, the band number given by the position)."""
    whole = int.from_bytes(packed, "big")
    return [band | whole >> shift & 0xFFFFFF for band, shift in _BAND_SHIFTS]


_BAND_SHIFTS: Final = [(band << 24, 8 * _BUCKET_HASH_BYTES * (BANDS - 1 - band)) for band in range(BANDS)]
"""Each band's number as a bucket id carries it, and where its hash is in the packed buckets read as one number."""
