"""The title table's memory store: a packed mapping that reads like a dict through writes, deletions, merges and
arena compactions, and Faust's ``memory://`` table built on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.settings import Settings
from stream_app.title_store import PackedTitles, TitleStore, key_partition
from stream_app.worker import build_app

DIGESTS = [bytes(8), b"\xff" * 8, b"\x7f" + b"\xff" * 7, b"\x80" + bytes(7), b"abcdefgh"]
PACKED_KEYS = [bytes([0, partition]) + digest for partition in (0, 1, 255) for digest in DIGESTS]
OTHER_KEYS = [b"3/abcdefghijk", b"\x01" * 10, b"\x00short"]
KEYS = st.sampled_from(PACKED_KEYS + OTHER_KEYS)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, st.binary(max_size=40)),
        st.tuples(st.just("delete"), KEYS, st.just(b"")),
        st.tuples(st.just("keep"), st.sets(st.sampled_from([0, 1, 3, 255])), st.just(b"")),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(OPERATIONS, st.integers(1, 6))
def test_it_reads_as_a_dict_does_after_any_writes_deletions_and_partition_drops(
    operations: list[tuple[str, Any, bytes]], recent_limit: int
) -> None:
    packed, expected = PackedTitles(recent_limit), {}
    for operation, key, value in operations:
        if operation == "keep":
            packed.keep_partitions(key)
            expected = {k: v for k, v in expected.items() if key_partition(k) in (*key, None)}
        elif operation == "set":
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
    for key in PACKED_KEYS + OTHER_KEYS:
        assert (key in packed) == (key in expected)
        assert packed.get(key) == expected.get(key)


def test_deleted_and_replaced_values_leave_the_arena_when_they_outweigh_the_rest() -> None:
    packed = PackedTitles(recent_limit=2)
    for round_ in range(50):
        for key in PACKED_KEYS:
            packed[key] = bytes([round_]) * 100
    assert len(packed) == len(PACKED_KEYS)
    assert all(packed[key] == bytes([49]) * 100 for key in PACKED_KEYS)
    assert len(packed._arena) <= 2 * 100 * len(PACKED_KEYS) + 100 * packed.recent_limit


def test_a_key_names_its_partition() -> None:
    assert key_partition(bytes([0, 7]) + bytes(8)) == 7
    assert key_partition(b"12/abcdefghijk") == 12
    assert key_partition(b"no partition") is None


def test_the_worker_memory_table_is_packed(trained_model_dir: Path, tmp_path: Path) -> None:
    app = build_app(Settings(model_dir=trained_model_dir, data_dir=tmp_path))
    table: Any = app.tables["title-index"]
    assert isinstance(table.data, TitleStore)
    assert isinstance(table.data.data, PackedTitles)
