"""Record batches whose header keys are not UTF-8 are read like any other.

aiokafka decodes every record header key as strict UTF-8, in its Cython and its Python record readers, inside the
fetch: one record whose key is other bytes (any producer may write them; the broker keeps keys as bytes) raised
``UnicodeDecodeError`` out of the consumer. The worker stopped before its own code saw the record, and every
worker given the partition stopped on it again at every start; on the tagged, review or feedback topics, which
every worker reads from their start, the whole fleet did. Not reported upstream (searched 2026-12-06).

The worker reads no header, so the fix reads such keys with U+FFFD in place of the bytes that are not UTF-8:
:func:`install` makes the fetcher's ``MemoryRecords`` hand out batches that read their records with aiokafka's
fast reader and, only when it fails on a header key, read that batch again with aiokafka's Python reader, its
header keys decoded leniently. The names this relies on are checked at start-up (:mod:`.checks`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, Final

import aiokafka.consumer.fetcher as fetcher_module
from aiokafka.record.default_records import _DefaultRecordBatchPy

_STRICT_MEMORY_RECORDS: Final = fetcher_module.MemoryRecords
_LENGTH: Final = struct.Struct(">i")
LOG_OVERHEAD: Final = 12
"""A batch's base offset (8 bytes) and length (4 bytes), before the ``length`` bytes it counts."""
MAGIC_OFFSET: Final = 16
"""Where a batch's format version (magic) is: 2 for batches with headers; 0 and 1 have none."""


class _LenientText(bytearray):
    """Bytes whose ``decode`` replaces what its encoding cannot read."""

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytearray.decode(self, encoding, "replace")


class _LenientBuffer(bytearray):
    """A record buffer whose slices (a header key, among others) decode leniently."""

    def __getitem__(self, index: Any) -> Any:
        found = bytearray.__getitem__(self, index)
        return _LenientText(found) if isinstance(index, slice) else found


class LenientRecordBatch(_DefaultRecordBatchPy):  # type: ignore[misc]  # aiokafka's private class is untyped
    """aiokafka's Python reader of a v2 record batch, its header keys decoded with U+FFFD for bytes not UTF-8."""

    def __init__(self, buffer: bytes | bytearray | memoryview) -> None:
        super().__init__(buffer)
        self._buffer: bytearray = _LenientBuffer(self._buffer)

    def _maybe_uncompress(self) -> None:
        super()._maybe_uncompress()
        if not isinstance(self._buffer, _LenientBuffer):  # a compressed batch's records, just decompressed
            self._buffer = _LenientBuffer(self._buffer)


class _TolerantBatch:
    """A batch of aiokafka's fast reader whose records, should a header key not decode, are read again leniently
    from its bytes; everything else is the batch's own."""

    __slots__ = ("_batch", "_raw")

    def __init__(self, batch: Any, raw: memoryview) -> None:
        self._batch = batch
        self._raw = raw

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __next__(self) -> Any:  # the fetcher reads a control batch's marker record by itself
        return next(self._batch)

    def __iter__(self) -> Iterator[Any]:
        last = -1
        try:
            for record in self._batch:
                last = record.offset
                yield record
        except UnicodeDecodeError:
            for record in LenientRecordBatch(self._raw):
                if record.offset > last:
                    yield record


class TolerantMemoryRecords:
    """aiokafka's ``MemoryRecords`` of one partition's fetched bytes, handing out :class:`_TolerantBatch` es."""

    def __init__(self, data: bytes) -> None:
        self._records = _STRICT_MEMORY_RECORDS(data)
        self._data = memoryview(data)
        self._position = 0

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None:
            return None
        start = self._position
        self._position = start + LOG_OVERHEAD + _LENGTH.unpack_from(self._data, start + 8)[0]
        if self._data[start + MAGIC_OFFSET] < 2:
            return batch
        return _TolerantBatch(batch, self._data[start : self._position])


def install() -> None:
    """Make every aiokafka consumer of this process read fetched records with :class:`TolerantMemoryRecords`."""
    fetcher_module.MemoryRecords = TolerantMemoryRecords
