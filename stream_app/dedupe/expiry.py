"""The expiry queue: the refs of the entries written, by event time, so that a sweep finds the expired ones
without reading the whole store."""

from __future__ import annotations

import array
import heapq
from typing import Final

import numpy as np

from stream_app.dedupe.entries import whole_seconds

EXPIRY_SLOT_SECONDS: Final = 64
"""Span of event time whose entries the expiry queue keeps together: a sweep filters at most one such slot."""


class ExpiryQueue:
    """The refs of the entries written, by event time (whole seconds, rounded up, as stored): a sweep takes the
    expired ones instead of reading the whole store. 12 bytes each, in one pair of arrays per
    :data:`EXPIRY_SLOT_SECONDS` of event time.

    Entries are found by their time, not the order they were written in: one dated far ahead holds up none of
    those behind it. Every look-up checks the time stored with the entry anyway.
    """

    def __init__(self) -> None:
        self._slots: dict[int, tuple[array.array[int], array.array[int]]] = {}
        self._order: list[int] = []
        """The keys of ``_slots``, a heap."""
        self._count = 0

    def push(self, event_time: float, ref: int) -> None:
        """Add an entry written for ``event_time`` under ``ref``."""
        seconds = whole_seconds(event_time)
        slot = self._slots.get(seconds // EXPIRY_SLOT_SECONDS)
        if slot is None:
            slot = self._slots[seconds // EXPIRY_SLOT_SECONDS] = (array.array("I"), array.array("Q"))
            heapq.heappush(self._order, seconds // EXPIRY_SLOT_SECONDS)
        slot[0].append(seconds)
        slot[1].append(ref)
        self._count += 1

    def pop_before(self, cutoff: float) -> list[int]:
        """Take out the refs written for event times before ``cutoff``."""
        refs: list[int] = []
        while self._order and self._order[0] * EXPIRY_SLOT_SECONDS < cutoff:
            key = self._order[0]
            times, slot_refs = self._slots[key]
            if (key + 1) * EXPIRY_SLOT_SECONDS <= cutoff:  # every time in the slot is before the cutoff
                refs.extend(slot_refs)
                heapq.heappop(self._order)
                del self._slots[key]
                self._count -= len(times)
                continue
            seconds = np.frombuffer(times, np.uint32)
            expired = seconds < cutoff
            if expired.any():
                kept = ~expired
                refs.extend(np.frombuffer(slot_refs, np.uint64)[expired].tolist())
                self._slots[key] = (
                    array.array("I", seconds[kept].tobytes()),
                    array.array("Q", np.frombuffer(slot_refs, np.uint64)[kept].tobytes()),
                )
                self._count -= int(expired.sum())
            break
        return refs

    def __len__(self) -> int:
        return self._count
