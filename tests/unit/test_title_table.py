"""The title table's keys and serializers: 10-byte keys in memory and on the wire, raw binary values, keys of
earlier versions still read, and each partition's slice of the table keyed by ref."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.agents import TITLE_KEY_CODEC, PartitionView
from stream_app.settings import Settings
from stream_app.title_store import title_key
from stream_app.worker import build_app


@pytest.fixture(scope="module")
def table(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    app = build_app(Settings(model_dir=trained_model_dir, data_dir=tmp_path_factory.mktemp("worker")))
    return app.tables["title-index"]


def ref(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest)[:11].decode()


@given(st.integers(0, 255), st.binary(min_size=8, max_size=8))
def test_a_title_key_is_ten_bytes_and_reads_back(table: Any, partition: int, digest: bytes) -> None:
    key = title_key(partition, ref(digest))
    assert key == bytes([0, partition]) + digest
    raw = table.app.serializers.dumps_key(bytes, key, serializer=table.key_serializer)
    assert raw == key
    assert table.app.serializers.loads_key(bytes, raw, serializer=table.key_serializer) == key


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("0/l30bwqhBuc4", bytes([0, 0]) + base64.urlsafe_b64decode("l30bwqhBuc4=")),
        ("300/l30bwqhBuc4", b"300/l30bwqhBuc4"),
        ("0/t:0123456789abcdef", b"0/t:0123456789abcdef"),
        ("0/l30bwqhBuc5", b"0/l30bwqhBuc5"),
    ],
)
def test_keys_earlier_versions_wrote_as_json_read_back_as_todays(table: Any, written: str, key: bytes) -> None:
    """Earlier versions wrote ``"<partition>/<ref>"`` as JSON: a ref of a partition below 256 reads back as its
    10-byte key; partitions past 255, other shapes and non-canonical base64 as the string's bytes, which round-trip."""
    serializers = table.app.serializers
    assert serializers.loads_key(bytes, json.dumps(written).encode(), serializer=table.key_serializer) == key
    raw = serializers.dumps_key(bytes, key, serializer=table.key_serializer)
    assert serializers.loads_key(bytes, raw, serializer=table.key_serializer) == key


@pytest.mark.parametrize("partition", [0, 3, 300])
def test_a_partition_view_sees_only_its_own_entries_by_ref(partition: int) -> None:
    table: dict[bytes, bytes] = {}
    mine, other = PartitionView(table, partition), PartitionView(table, partition + 1)
    refs = [ref(bytes([n]) * 8) for n in range(3)] + ["not-a-ref"]
    for n, key in enumerate(refs):
        mine[key] = other[key] = bytes([n])
    assert sorted(mine) == sorted(refs)
    assert [mine[key] for key in refs] == [bytes([n]) for n in range(len(refs))]
    del mine[refs[0]], mine["not-a-ref"]
    assert sorted(mine) == sorted(refs[1:3]) and len(other) == len(refs)
    assert mine.get(refs[0]) is None and other.get(refs[0]) == bytes([0])
    assert all(isinstance(key, bytes) for key in table)


def test_a_partition_view_of_the_worker_table_reads_its_store(table: Any) -> None:
    """The worker's views read the table's store directly (not through the table, whose sensors cost more than
    the look-up): they see what the table holds, and a missing ref reads as None."""
    view = PartitionView(table, 7, table.data)
    key = ref(b"\x01" * 8)
    table.data[title_key(7, key)] = b"\x81stored"
    try:
        assert view.get(key) == view[key] == b"\x81stored"
        assert view.get(ref(b"\x02" * 8)) is None and PartitionView(table, 8, table.data).get(key) is None
        with pytest.raises(KeyError):
            view[ref(b"\x02" * 8)]
    finally:
        del table.data[title_key(7, key)]


def test_the_changelog_carries_the_binary_keys_and_raw_values(table: Any) -> None:
    assert (table.key_serializer, table.value_serializer) == (TITLE_KEY_CODEC, "raw")
    changelog = table.changelog_topic
    assert (changelog.key_serializer, changelog.value_serializer) == (TITLE_KEY_CODEC, "raw")
    value = b"\x81\x00binary entry"
    assert table.app.serializers.dumps_value(bytes, value, serializer=table.value_serializer) == value


def test_a_rocksdb_table_has_bounded_caches(trained_model_dir: Path, tmp_path: Path) -> None:
    """Faust's RocksDB defaults (a 2 GB block cache, 3 write buffers of 64 MB) would let memory grow with the table."""
    settings = Settings(model_dir=trained_model_dir, data_dir=tmp_path, store="rocksdb://")
    options = build_app(settings).tables["title-index"].data.rocksdb_options
    assert options.block_cache_size <= 64 << 20
    assert options.write_buffer_size * options.max_write_buffer_number <= 32 << 20
