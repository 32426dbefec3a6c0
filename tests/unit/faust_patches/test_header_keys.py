"""A fetched record batch whose header keys are not UTF-8 is read whole, by every consumer of the worker."""

from __future__ import annotations

from typing import Any

import aiokafka.consumer.fetcher as fetcher_module
import pytest
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, PartitionRecords
from aiokafka.record import default_records
from aiokafka.structs import TopicPartition

from stream_app.faust_patches import header_keys
from stream_app.faust_patches.checks import missing_hooks


class NotUtf8(str):
    """A header key that aiokafka's Python batch builder writes as bytes that are not UTF-8."""

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return b"\xff\xfe"


def batch_bytes(records: list[tuple[bytes, list[tuple[str, bytes]]]], compression: int = 0, base: int = 0) -> bytes:
    """One v2 record batch as the broker hands it out, its first record at offset ``base``."""
    builder = default_records._DefaultRecordBatchBuilderPy(
        2, compression, is_transactional=0, producer_id=-1, producer_epoch=-1, base_sequence=0, batch_size=1 << 20
    )
    for offset, (value, headers) in enumerate(records):
        assert builder.append(offset, timestamp=1_700_000_000_000, key=b"k", value=value, headers=headers)
    built = builder.build()
    return base.to_bytes(8, "big") + bytes(built[8:])  # the base offset, which the broker sets, is outside the CRC


def fetched(data: bytes, memory_records: Any) -> list[Any]:
    """The consumer records aiokafka's fetcher makes of one partition's fetched ``data``."""
    records = PartitionRecords(
        TopicPartition("content", 0), memory_records(data), None, 0, None, None, True, READ_UNCOMMITTED
    )
    return list(records)


@pytest.mark.parametrize("compression", [0, 1, 4], ids=["none", "gzip", "zstd"])
def test_a_header_key_that_is_not_utf8_no_longer_stops_the_fetch(compression: int) -> None:
    records = [(b"first", []), (b"second", [(NotUtf8("trace"), b"v")]), (b"third", [("ok", b"w")])]
    data = batch_bytes(records, compression) + batch_bytes([(b"fourth", [])], base=3)
    with pytest.raises(UnicodeDecodeError):  # aiokafka alone: the whole fetch raises
        fetched(data, header_keys._STRICT_MEMORY_RECORDS)
    read = fetched(data, header_keys.TolerantMemoryRecords)
    assert [record.value for record in read] == [b"first", b"second", b"third", b"fourth"]
    assert [record.offset for record in read] == [0, 1, 2, 3]
    assert list(read[1].headers) == [("\ufffd\ufffd", b"v")] and list(read[2].headers) == [("ok", b"w")]


def test_install_reads_every_consumer_s_fetches_tolerantly_and_its_names_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fetcher_module, "MemoryRecords", header_keys._STRICT_MEMORY_RECORDS)
    header_keys.install()
    assert fetcher_module.MemoryRecords is header_keys.TolerantMemoryRecords
    assert not [hook for hook in missing_hooks() if "header_keys" in hook.used_by]
