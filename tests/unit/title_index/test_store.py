"""The title index's memory: a packed mapping of 8-byte keys that reads like a dict through writes, deletions,
merges and arena compactions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.title_index.store import PackedTitles

KEYS_LIST = [bytes(8), b"\xff" * 8, b"\x7f" + b"\xff" * 7, b"\x80" + bytes(7), b"abcdefgh", b"abcdefgi"]
KEYS = st.sampled_from(KEYS_LIST)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, st.binary(max_size=40)),
        st.tuples(st.just("delete"), KEYS, st.just(b"")),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(OPERATIONS, st.integers(1, 6))
def test_it_reads_as_a_dict_does_after_any_writes_and_deletions(
    operations: list[tuple[str, Any, bytes]], recent_limit: int
) -> None:
    packed, expected = PackedTitles(recent_limit), {}
    for operation, key, value in operations:
        if operation == "set":
            packed[key] = value
            expected[key] = value
        elif key in expected:
            del packed[key], expected[key]
        else:
            with pytest.raises(KeyError):
                del packed[key]
        assert len(packed) == len(expected)
    assert sorted(packed) == sorted(expected)
    assert dict(packed.items()) == expected
    assert sorted(packed.numbered_items()) == sorted((int.from_bytes(key, "big"), v) for key, v in expected.items())
    for key in KEYS_LIST:
        assert (key in packed) == (key in expected)
        assert packed.get(key) == expected.get(key)
        assert packed.get(key, b"default") == expected.get(key, b"default")


def test_deleted_and_replaced_values_leave_the_arena_when_they_outweigh_the_rest() -> None:
    packed = PackedTitles(recent_limit=2)
    for round_ in range(50):
        for key in KEYS_LIST:
            packed[key] = bytes([round_]) * 100
    assert len(packed) == len(KEYS_LIST)
    assert all(packed[key] == bytes([49]) * 100 for key in KEYS_LIST)
    assert len(packed._arena) <= 2 * 100 * len(KEYS_LIST) + 100 * packed.recent_limit


@pytest.mark.parametrize("key", [b"", b"short", bytes(9)])
def test_a_key_of_another_length_is_refused_and_never_found(key: bytes) -> None:
    packed = PackedTitles()
    with pytest.raises(KeyError):
        packed[key] = b"value"
    assert key not in packed
    assert packed.get(key) is None


def test_deletions_alone_shrink_the_packed_arrays() -> None:
    packed = PackedTitles(recent_limit=4)
    keys = [bytes([n]) * 8 for n in range(1, 9)]
    for key in keys:
        packed[key] = b"value"
    full = packed.nbytes
    for key in keys[:4]:
        del packed[key]
    assert len(packed) == 4 and sorted(packed) == sorted(keys[4:])
    assert packed.nbytes < full


def test_writes_past_the_recent_limit_are_packed() -> None:
    """The recent writes' dict costs ~170 B a title: past its limit they go into the arrays and arena."""
    packed = PackedTitles(recent_limit=4)
    for n in range(1, 9):
        packed[bytes([n]) * 8] = b"value"
    assert len(packed) == 8 and packed.nbytes >= 8 * len(b"value")  # every value in the arena
