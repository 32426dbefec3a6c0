"""The LSH bucket index of one partition's titles: bucket id -> the refs of the newest titles in that bucket.

It lives in memory only (the title entries carry their bucket ids, so it is rebuilt after a restart) and is
most of the dedupe state a worker holds: four buckets per title. Python objects would cost ~140 bytes per
title; two sorted numpy arrays (bucket id, ref) cost 12 bytes per bucket entry, 48 per title. New entries
wait in a small dict and are merged into the arrays in batches.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

import numpy as np
import numpy.typing as npt

MERGE_EVERY: Final = 16_384
"""Least number of pending bucket entries that triggers a merge into the arrays (by default); a merge copies
the arrays, so past 64 times that many entries they merge every 1/64 of their size instead."""


class BucketIndex:
    """Bucket ids (32-bit) -> refs (64-bit), at most ``limit`` per bucket, newest last."""

    def __init__(self, limit: int, merge_every: int = MERGE_EVERY) -> None:
        self.limit = limit
        self.merge_every = merge_every
        self._ids: npt.NDArray[np.uint32] = np.empty(0, np.uint32)
        self._refs: npt.NDArray[np.uint64] = np.empty(0, np.uint64)
        self._pending: dict[int, list[int]] = {}
        self._pending_count = 0

    @classmethod
    def from_entries(
        cls,
        limit: int,
        bucket_ids: npt.NDArray[np.uint32],
        refs: npt.NDArray[np.uint64],
        merge_every: int = MERGE_EVERY,
    ) -> BucketIndex:
        """An index of (bucket id, ref) pairs given oldest first."""
        index = cls(limit, merge_every)
        order = np.argsort(bucket_ids, kind="stable")
        index._ids, index._refs = bucket_ids[order], refs[order]
        index._trim(np.unique(index._ids))
        return index

    def add(self, bucket_ids: Iterable[int], ref: int) -> None:
        """Put ``ref`` in each bucket as its newest entry (:meth:`remove` it first if it may be in already)."""
        for bucket in bucket_ids:
            refs = self._pending.setdefault(bucket, [])
            if ref in refs:
                refs.remove(ref)
            else:
                self._pending_count += 1
            refs.append(ref)
        if self._pending_count >= max(self.merge_every, len(self._ids) // 64):
            self._merge()

    def candidates(self, bucket_ids: list[int]) -> set[int]:
        """The refs in any of ``bucket_ids``."""
        found: set[int] = set()
        wanted = np.array(bucket_ids, np.uint32)
        lows, highs = self._ids.searchsorted(wanted, "left"), self._ids.searchsorted(wanted, "right")
        for bucket, low, high in zip(bucket_ids, lows.tolist(), highs.tolist(), strict=True):
            pending = self._pending.get(bucket, ())
            if len(pending) >= self.limit:
                found.update(pending[-self.limit :])
            else:
                refs = self._refs[max(low, high - self.limit) : high].tolist()
                found.update([*(ref for ref in refs if ref not in pending), *pending][-self.limit :])
        return found

    def remove(self, refs: Collection[int]) -> None:
        """Take ``refs`` out of every bucket."""
        if not refs:
            return
        self._merge()  # a ref taken out of a bucket must not let one it pushed out come back
        gone = np.sort(np.fromiter(refs, np.uint64, len(refs)))
        # A binary search per entry: cheaper than np.isin's sort of both arrays when the index is large.
        at = np.minimum(gone.searchsorted(self._refs), len(gone) - 1)
        kept = gone[at] != self._refs
        self._ids, self._refs = self._ids[kept], self._refs[kept]

    def clear(self) -> None:
        """Forget every bucket."""
        self.__init__(self.limit, self.merge_every)  # type: ignore[misc]

    def as_dict(self) -> dict[int, list[int]]:
        """Every bucket's refs, newest last (for tests and benchmarks: it builds Python objects for each)."""
        self._merge()
        buckets: dict[int, list[int]] = {}
        for bucket, ref in zip(self._ids.tolist(), self._refs.tolist(), strict=True):
            buckets.setdefault(bucket, []).append(ref)
        return buckets

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (the pending dict is bounded by :data:`MERGE_EVERY`)."""
        return int(self._ids.nbytes + self._refs.nbytes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BucketIndex) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]

    def _merge(self) -> None:
        if not self._pending:
            return
        buckets = sorted(self._pending)
        ids = np.repeat(np.array(buckets, np.uint32), [len(self._pending[bucket]) for bucket in buckets])
        refs = np.array([ref for bucket in buckets for ref in self._pending[bucket]], np.uint64)
        at = self._ids.searchsorted(ids, "right")
        self._ids, self._refs = np.insert(self._ids, at, ids), np.insert(self._refs, at, refs)
        self._pending.clear()
        self._pending_count = 0
        self._trim(np.array(buckets, np.uint32))

    def _trim(self, bucket_ids: npt.NDArray[np.uint32]) -> None:
        """Drop all but the newest ``limit`` refs of each of ``bucket_ids``."""
        lows, highs = self._ids.searchsorted(bucket_ids, "left"), self._ids.searchsorted(bucket_ids, "right")
        over = highs - lows - self.limit
        full = over > 0
        if full.any():
            drop = np.concatenate(
                [np.arange(low, low + extra) for low, extra in zip(lows[full], over[full], strict=True)]
            )
            self._ids, self._refs = np.delete(self._ids, drop), np.delete(self._refs, drop)
