"""An index fed another index's changes (a replica): it judges and expires as the writer does."""

from __future__ import annotations

import operator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.dedupe import DedupeIndex, dedupe_key, entry_fields
from stream_app.dedupe.normalize import ref_of
from tests.unit.dedupe.helpers import DAY, DESCRIPTION, ORIGINAL, index


class ChangeLog(dict[str, Any]):
    """A dict that records every write and deletion, as the worker's changelog topic carries them."""

    def __init__(self) -> None:
        super().__init__()
        self.changes: list[tuple[str, bytes | None]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.changes.append((key, value))

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.changes.append((key, None))


def replicate(source: ChangeLog, replica: DedupeIndex) -> None:
    for ref, value in source.changes:
        replica.apply(ref, value)
    source.changes.clear()


def test_an_index_fed_another_ones_changes_judges_and_expires_as_it_does() -> None:
    writer_store = ChangeLog()
    writer, replica = index(writer_store, ttl=DAY), index(ttl=DAY)
    typo = ORIGINAL.replace("prediction", "predicton")
    writer.check_and_add("1", ORIGINAL, DESCRIPTION, 0)
    writer.check_and_add("2", typo, DESCRIPTION, 10)
    writer.check_and_add("3", "Another title entirely about audio", None, DAY / 2)
    replicate(writer_store, replica)
    assert replica.store == writer_store and replica.entries == writer.entries == 3
    assert replica.buckets == writer.buckets
    # Copies are caught on the replica as on the writer, exact, near, and copies of the near copy.
    assert replica.check_and_add("4", ORIGINAL.upper(), None, 20).duplicate_of == "1"
    assert replica.check_and_add("5", ORIGINAL.replace("molecular", "molecullar"), None, 21).duplicate_of == "1"
    assert replica.check_and_add("6", typo + "!", None, 22).duplicate_of == "1"
    assert replica.check_and_add("7", "Another title entirely about audio - Medium", None, 23).duplicate_of == "3"
    # The writer's tombstones take the titles out of the replica's buckets and count.
    assert writer.expire(DAY + 15) == 1
    replicate(writer_store, replica)
    assert ref_of(int.from_bytes(bytes.fromhex(dedupe_key(ORIGINAL)), "big")) not in replica.store
    assert replica.entries == len(replica.store)
    assert replica.check_and_add("8", ORIGINAL.replace("molecular", "molecullar"), None, DAY + 16).match is None
    # The replica's own sweep finds what it was given by its event time.
    assert replica.expire(3 * DAY) == 2 and replica.store == {} and replica.entries == 0
    assert replica.buckets.as_dict() == {}


def test_a_near_copy_stored_in_an_expired_titles_place_takes_the_title_out_of_the_buckets() -> None:
    """A title seen again after its TTL may be a near copy of a newer title: its entry becomes a copy's, and its
    bucket entries, which only a title's should hold, leave at the next sweep, on the writer and on a replica."""
    writer_store = ChangeLog()
    writer, replica = index(writer_store, ttl=DAY), index(ttl=DAY)
    typo = ORIGINAL.replace("prediction", "predicton")
    writer.check_and_add("1", typo, DESCRIPTION, 0)
    writer.check_and_add("2", ORIGINAL, DESCRIPTION, DAY + 1)  # the typo's title expired: a title of its own
    assert writer.check_and_add("3", typo, DESCRIPTION, DAY + 2).duplicate_of == "2"  # in the typo's old place
    replicate(writer_store, replica)
    typo_ref = int.from_bytes(bytes.fromhex(dedupe_key(typo)), "big")
    for judge in (writer, replica):
        judge.expire(DAY + 3)
        assert not [bucket for bucket, refs in judge.buckets.as_dict().items() if typo_ref in refs]
        assert judge.check_and_add("4", typo + "!", DESCRIPTION, DAY + 4).duplicate_of == "2"


def test_a_change_applied_twice_or_a_tombstone_of_nothing_changes_nothing() -> None:
    writer_store = ChangeLog()
    writer, replica = index(writer_store), index()
    writer.check_and_add("1", ORIGINAL, DESCRIPTION, 0)
    changes = list(writer_store.changes)
    for ref, value in changes + changes:
        replica.apply(ref, value)
    replica.apply(ref_of(12345), None)
    assert replica.store == writer_store and replica.entries == 1 and replica.buckets == writer.buckets


refs = st.sampled_from([ref_of(1), ref_of(2**64 - 1), dedupe_key(ORIGINAL)[:11]]) | st.text(max_size=14)


values = (
    st.none()
    | st.binary(max_size=80)
    | st.builds(operator.add, st.sampled_from([b"\x01", b"\x80", b"\xc3", b"\xff"]), st.binary(max_size=80))
    | st.sampled_from(["text", 17, b"\x80"])  # not even bytes
)


@settings(max_examples=300)
@given(st.lists(st.tuples(refs, values), max_size=20), st.floats(allow_nan=True))
def test_changes_of_no_known_shape_are_ignored_and_never_raise(changes: list[tuple[Any, Any]], now: float) -> None:
    store: dict[str, Any] = {}
    dedupe = index(store)
    dedupe.check_and_add("1", ORIGINAL, DESCRIPTION, 0)
    for ref, value in changes:
        dedupe.apply(ref, value)
    assert all(entry_fields(value) is not None for value in store.values())
    assert dedupe.entries == len(store)
    dedupe.check_and_add("2", ORIGINAL.replace("molecular", "molecullar"), None, 1)
    dedupe.expire(now)
    assert dedupe.entries == len(store)
