"""The stored values: bytes, never mutated, read back or read as nothing, with times clamped."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.dedupe import dedupe_key, entry_fields
from stream_app.dedupe.entries import TitleEntry, title_bytes, unpack_buckets
from stream_app.dedupe.normalize import REF_BYTES, key_digest
from stream_app.dedupe.signatures import BANDS
from stream_app.schema import MAX_ID_CHARS
from stream_app.title_index.index import TitleIndex
from tests.unit.dedupe.helpers import DAY, ORIGINAL, RecordingStore, index, stored_id


def test_stored_values_are_bytes_and_never_mutated_in_place() -> None:
    store = RecordingStore()
    dedupe = index(store, ttl=DAY)
    stream = [
        "Deep learning for audio classification",
        "Deep learning for image classification",
        "Deep learning for text classification",
        "Deep learning for audio classification",
        "Deep lerning for image classification",
        "Deep learning for video classification",
    ]
    for n, title in enumerate(stream):
        dedupe.check_and_add(str(n), title, f"About {title}.", n * 1000.0)
    assert store.data == store.assigned
    writes = store.writes
    assert dedupe.expire(5000) == 0 and store.writes == writes  # nothing expired: nothing written
    dedupe.expire(DAY + 2500)
    # Titles "0" to "2" are gone; the near copy of "1" (seen at 4000) stays until its own time is past the TTL.
    assert sorted(stored_id(value) for value in store.values()) == ["1", "5"]
    dedupe.expire(DAY + 4500)
    assert [stored_id(value) for value in store.values()] == ["5"]
    assert store.data == store.assigned
    assert all(isinstance(value, bytes) for value in store.data.values())  # what the table's raw serializer takes


def test_values_of_no_known_shape_read_as_nothing() -> None:
    for value in (b"", b"\x00abc", b'"not|an|entry"', b"[1, 2]", b"\x80", "x|y", 17, None, b"\x01"):
        assert entry_fields(value) is None, value


@pytest.mark.parametrize(
    "time", [-1e12, -5.5, 0.0, 2.0**32 - 0.5, 2.0**32, 2.0**40, 1e300, math.inf, -math.inf, math.nan]
)
def test_any_event_time_is_clamped_into_what_an_entry_stores(time: float) -> None:
    store: dict[str, Any] = {}
    dedupe = index(store, ttl=DAY)
    assert dedupe.check_and_add("1", ORIGINAL, None, time).match is None
    assert dedupe.check_and_add("2", ORIGINAL, None, time).duplicate_of == "1"
    assert dedupe.check_and_add("3", ORIGINAL.replace("molecular", "molecullar"), None, time).duplicate_of == "1"
    replica = index(ttl=DAY)
    for ref, value in store.items():
        replica.apply(ref, value)
    assert replica.store == store and replica.entries == 2
    assert dedupe.expire(time) == replica.expire(time) == 0
    dedupe.expire(time + 2 * DAY)  # past the TTL, or clamped to the last second an entry stores
    assert dedupe.entries == len(store)


def test_values_no_worker_writes_read_as_nothing() -> None:
    now = 1_700_000_000
    original = title_bytes("1", now, b"", b"", [0, 1 << 24, 2 << 24, 3 << 24])
    original_ref = b"\x07" * REF_BYTES
    copy = bytes([0x01]) + now.to_bytes(4, "big") + (10_000).to_bytes(2, "big") + original_ref + b"1"
    assert entry_fields(original) is not None and entry_fields(copy) is not None
    # An id longer than an event's may be: the duplicate record of every later copy would carry it.
    assert entry_fields(title_bytes("i" * (MAX_ID_CHARS + 1), now, b"", b"", [0, 0, 0, 0])) is None
    assert entry_fields(copy[:-1] + b"\x00" * (MAX_ID_CHARS + 1)) is None
    assert entry_fields(copy[:5] + (10_001).to_bytes(2, "big") + copy[7:]) is None  # a similarity above 1


def test_a_hostile_index_record_never_reaches_a_duplicate_record() -> None:
    index = TitleIndex(ttl_seconds=DAY, max_skew_seconds=300)
    title = "Self-supervised learning for molecular graphs"
    digest = key_digest(dedupe_key(title))
    hostile = title_bytes("\x00" * 200_000, time.time(), b"", b"", [0, 0, 0, 0])
    assert index.load(digest, hostile) == "invalid_value"
    index.finish_loading()
    ((verdict, _),) = index.check_many([("e2", title, None, time.time())])
    assert verdict.match is None  # shown, and its own entry replaces the refused one


@settings(max_examples=200)
@given(st.lists(st.integers(0, 0xFFFFFF), min_size=BANDS, max_size=BANDS))
def test_a_title_entry_gives_back_the_bucket_ids_it_was_written_with(hashes: list[int]) -> None:
    buckets = [band << 24 | bucket for band, bucket in enumerate(hashes)]
    entry = entry_fields(title_bytes("7", 1000.0, b"", b"", buckets))
    assert isinstance(entry, TitleEntry)
    assert unpack_buckets(entry.buckets) == buckets
