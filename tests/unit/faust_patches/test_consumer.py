"""The worker consumer's bookkeeping of seeks against fetches (on a broker: tests/integration/test_consumer.py)."""

from __future__ import annotations

from faust.types import TP

from stream_app.faust_patches.consumer import ReadOffsets, SeekClock

STREAM, OTHER = TP("content", 0), TP("content", 1)


def test_a_fetch_before_a_seek_of_its_partition_predates_it_and_a_later_fetch_does_not() -> None:
    seeks = SeekClock()
    fetched_before = seeks.now
    seeks.sought([STREAM])
    fetched_after = seeks.now
    assert seeks.predates_seek(STREAM, fetched_before)
    assert not seeks.predates_seek(STREAM, fetched_after)
    assert not seeks.predates_seek(OTHER, fetched_before), "a seek moves only the partitions it names"


def test_the_read_offset_of_a_record_fetched_before_a_seek_is_not_kept() -> None:
    seeks = SeekClock()
    read_offsets = ReadOffsets(seeks)
    assert read_offsets[STREAM] is None, "nothing read yet"
    fetched_at = seeks.now
    read_offsets.delivering(STREAM, 150, fetched_at)
    read_offsets[STREAM] = 150
    assert read_offsets[STREAM] == 150, "no seek yet: Faust's fetch loop moves the read offset"

    read_offsets.delivering(STREAM, 151, fetched_at)
    seeks.sought([STREAM])  # lands while record 151 is handed on
    read_offsets.update({STREAM: 7})  # Faust's seek to the committed offset
    read_offsets[STREAM] = 151  # the fetch loop, done with 151
    assert read_offsets[STREAM] == 7, "records from 7 on are read again, not dropped as read"

    read_offsets[OTHER] = 151
    read_offsets[STREAM] = 9
    assert (read_offsets[OTHER], read_offsets[STREAM]) == (151, 9), "other updates are kept"
