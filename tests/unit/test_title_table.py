"""The title table's serializers: 10-byte keys, raw binary values, and keys of earlier versions still read."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.agents import TITLE_KEY_CODEC
from stream_app.settings import Settings
from stream_app.worker import build_app


@pytest.fixture(scope="module")
def table(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    app = build_app(Settings(model_dir=trained_model_dir, data_dir=tmp_path_factory.mktemp("worker")))
    return app.tables["title-index"]


def ref(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest)[:11].decode()


@given(st.integers(0, 255), st.binary(min_size=8, max_size=8))
def test_a_title_key_is_ten_bytes_and_reads_back(table: Any, partition: int, digest: bytes) -> None:
    key = f"{partition}/{ref(digest)}"
    raw = table.app.serializers.dumps_key(str, key, serializer=table.key_serializer)
    assert raw == bytes([0, partition]) + digest
    assert table.app.serializers.loads_key(str, raw, serializer=table.key_serializer) == key


@pytest.mark.parametrize("key", ["0/l30bwqhBuc4", "300/l30bwqhBuc4", "0/t:0123456789abcdef", "0/l30bwqhBuc5"])
def test_other_keys_and_keys_written_as_json_read_back(table: Any, key: str) -> None:
    """Keys earlier versions wrote were JSON; partitions past 255, other shapes and non-canonical base64 stay so."""
    serializers = table.app.serializers
    assert serializers.loads_key(str, json.dumps(key).encode(), serializer=table.key_serializer) == key
    raw = serializers.dumps_key(str, key, serializer=table.key_serializer)
    assert serializers.loads_key(str, raw, serializer=table.key_serializer) == key


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
