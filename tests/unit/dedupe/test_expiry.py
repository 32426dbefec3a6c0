"""Expiry by event time: what a sweep deletes, what it reads, and what it leaves."""

from __future__ import annotations

from typing import Any

from stream_app.dedupe.expiry import EXPIRY_SLOT_SECONDS
from stream_app.dedupe.normalize import ref_of
from tests.unit.dedupe.helpers import DAY, ORIGINAL, ReadCountingStore, index, stored_id


def test_entries_expire_by_event_time_in_check_and_add() -> None:
    dedupe = index(ttl=DAY)
    dedupe.check_and_add("1", ORIGINAL, None, 1000)
    typo = ORIGINAL.replace("molecular", "molecullar")
    assert dedupe.check_and_add("2", ORIGINAL, None, 1000 + DAY).duplicate_of == "1"  # exactly the TTL: kept
    assert dedupe.check_and_add("3", typo, None, 1000 + DAY).duplicate_of == "1"
    assert dedupe.check_and_add("4", ORIGINAL, None, 1000.5 + DAY).match is None  # too old: overwritten
    assert dedupe.check_and_add("5", ORIGINAL, None, 1001 + DAY).duplicate_of == "4"
    assert dedupe.check_and_add("6", typo, None, 1001 + DAY).duplicate_of == "4"

    dedupe = index(ttl=DAY)
    dedupe.check_and_add("1", ORIGINAL, None, 0)
    assert dedupe.check_and_add("2", typo, None, DAY + 0.5).match is None


def test_expire_deletes_old_titles_and_their_bucket_references() -> None:
    store: dict[str, Any] = {}
    dedupe = index(store, ttl=DAY)
    dedupe.check_and_add("1", "Old title from last month about graph networks", None, 0)
    dedupe.check_and_add("2", ORIGINAL, None, 10 * DAY)
    assert dedupe.expire(10 * DAY) == 1
    assert dedupe.expire(10 * DAY) == 0
    assert [stored_id(value) for value in store.values()] == ["2"]
    refs = [ref for refs in dedupe.buckets.as_dict().values() for ref in refs]
    assert refs and all(ref_of(ref) in store for ref in refs)
    assert dedupe.check_and_add("3", "Old title from last month about graph networks", None, 10 * DAY).match is None
    assert dedupe.check_and_add("4", ORIGINAL.replace("property", "propety"), None, 10 * DAY).duplicate_of == "2"
    assert dedupe.expire(12 * DAY) == 2
    assert store == {} and dedupe.buckets.as_dict() == {}


def test_a_sweep_reads_only_the_entries_it_deletes() -> None:
    """A sweep used to read the whole store: 1 s of stall per million titles, once a minute."""
    store = ReadCountingStore()
    dedupe = index(store, ttl=DAY)
    for n in range(200):
        dedupe.check_and_add(str(n), f"Title number {n} about graph networks", None, n * 60.0)
    store.reads = 0
    assert dedupe.expire(DAY) == 0 and store.reads == 0
    assert dedupe.expire(DAY + 60 * 10 + 1) == 11 and store.reads == 11
    assert (
        len(store) == 189 and dedupe.check_and_add("x", "Title number 3 about graph networks", None, DAY).match is None
    )
    rebuilt = index(dict(store), ttl=DAY)  # after a restart, the queue is rebuilt from the store
    assert rebuilt.expire(DAY + 60 * 20 + 1) == 10 and len(rebuilt.store) == 180  # 11 to 20 go, "x" stays


def test_the_entry_count_follows_the_store_through_copies_expiry_and_a_rebuild() -> None:
    store: dict[str, Any] = {"t:0123456789abcdef": b"\x80junk"}  # no entry of this module: counted, then swept
    dedupe = index(store, ttl=DAY)
    typo = ORIGINAL.replace("prediction", "predicton")
    for n, (title, time) in enumerate([(ORIGINAL, 0), (typo, 10), (ORIGINAL, 20), ("Another title entirely", 30)]):
        dedupe.check_and_add(str(n), title, None, time)
        assert dedupe.entries == len(store)
    dedupe.expire(DAY + 15)
    assert dedupe.entries == len(store) == 1
    dedupe.check_and_add("9", ORIGINAL, None, DAY + 16)  # stored anew where its expired entry was
    assert dedupe.entries == len(store) == index(dict(store)).entries == 2


def test_expire_deletes_keys_and_values_of_no_known_shape() -> None:
    store: dict[str, Any] = {
        "t:0123456789abcdef": b"\x01" * 20,
        ref_of(1): b"\x00abc",
        ref_of(2): "a string",
        "~0AAAAAA": b"",
    }
    dedupe = index(store)
    dedupe.check_and_add("2", ORIGINAL, None, 10)
    assert dedupe.expire(10) == 0
    assert [stored_id(value) for value in store.values()] == ["2"]


def test_a_title_dated_far_ahead_holds_up_the_expiry_of_none_behind_it() -> None:
    store: dict[str, Any] = {}
    dedupe = index(store, ttl=DAY)
    dedupe.check_and_add("ahead", "A title dated ten years ahead", None, 3650 * DAY)
    for n in range(300):
        dedupe.check_and_add(str(n), f"Old title number {n} about graph networks", None, n * 10.0)
    assert dedupe.expire(DAY + 1500.5) == 151  # times 0 to 1500
    assert dedupe.expire(2 * DAY) == 149
    assert [stored_id(value) for value in store.values()] == ["ahead"] and dedupe.entries == 1


def test_an_entry_written_for_a_time_already_swept_expires_at_the_next_sweep() -> None:
    """Another worker's entry, read late, may be dated in a span of time this worker has swept already."""
    store: dict[str, Any] = {}
    dedupe = index(store, ttl=DAY)
    dedupe.check_and_add("1", "Old title from last month about graph networks", None, 10)
    assert dedupe.expire(DAY + 4 * EXPIRY_SLOT_SECONDS) == 1
    dedupe.check_and_add("2", ORIGINAL, None, 20)  # in the slot swept above
    assert dedupe.expire(DAY + 4 * EXPIRY_SLOT_SECONDS) == 1
    assert store == {}
