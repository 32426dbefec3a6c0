"""The order of the title index topic's latest entry records: where each key's records came among them."""

from __future__ import annotations

from array import array
from typing import Final

import numpy as np

ORDER_KEPT: Final = 1 << 18
"""How many of the topic's latest entry records a worker keeps the order of (their keys, 8 bytes each): a batch
replayed within that many records of its own entries is judged against the near copies stored before them
(:meth:`~stream_app.title_index.index.TitleIndex.check_many`)."""


class RecordOrder:
    """The keys of the latest :data:`ORDER_KEPT` entry records read, in a ring: the ``n``-th record read (from 0) in
    slot ``n % ORDER_KEPT``."""

    def __init__(self) -> None:
        # A Python array, not a numpy one: every record applied writes one element, which costs a numpy array
        # several times more; the rare scan reads it through numpy without a copy.
        self._keys = array("Q", bytes(8 * ORDER_KEPT))
        self._read = 0
        """Entry records read so far."""

    def note(self, key: bytes) -> None:
        """One more entry record read, under ``key`` (8 bytes)."""
        self._keys[self._read % ORDER_KEPT] = int.from_bytes(key, "big")
        self._read += 1

    def positions(self, key: bytes) -> list[int]:
        """The numbers of the entry records under ``key`` among the last :data:`ORDER_KEPT` read."""
        read = self._read
        kept = np.frombuffer(self._keys, np.uint64)[: min(read, ORDER_KEPT)]
        slots = np.flatnonzero(kept == np.uint64(int.from_bytes(key, "big")))
        return [read - 1 - (read - 1 - int(slot)) % ORDER_KEPT for slot in slots]
