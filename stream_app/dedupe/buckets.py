"""The LSH bucket index of one partition's titles: bucket id -> the refs of the newest titles in that bucket.

It lives in memory only (the title entries carry their bucket ids, so it is rebuilt after a restart) and is
most of the dedupe state a worker holds: four buckets per title. Python objects would cost ~140 bytes per
title; three sorted numpy arrays (bucket id, ref, tag) cost 14 bytes per bucket entry, 56 per title. New
entries wait in a small dict and are merged into the arrays in batches.

Each ref carries a 16-bit tag, given when it is added, that a look-up hands back with it: it lets the caller
pass over a candidate without reading its entry.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

MERGE_EVERY: Final = 16_384
"""Least number of pending bucket entries that triggers a merge into the arrays (by default); a merge copies
the arrays, so past 64 times that many entries they merge every 1/64 of their size instead."""


class Located(NamedTuple):
    """Some buckets' entries in a :class:`BucketIndex`'s arrays (:meth:`BucketIndex.locate`), each newest last."""

    arrays: object
    """The arrays they were read from: valid while the index still has these (a merge replaces them)."""
    entries: list[list[tuple[int, int]]]
    """Each bucket's newest ``limit`` (ref, tag) entries in the arrays; the pending ones are not included."""


class BucketIndex:
    """Bucket ids (32-bit) -> refs (64-bit) with their tags (16-bit), at most ``limit`` per bucket, newest last.

    A ref is always given with the same tag (a tag is a function of what the ref stands for)."""

    def __init__(self, limit: int, merge_every: int = MERGE_EVERY) -> None:
        self.limit = limit
        self.merge_every = merge_every
        self._ids: npt.NDArray[np.uint32] = np.empty(0, np.uint32)
        # Three plain arrays, not one structured (ref, tag) array: numpy copies a structured array element by
        # element, and a merge copies them all (decision 0205).
        self._refs: npt.NDArray[np.uint64] = np.empty(0, np.uint64)
        self._tags: npt.NDArray[np.uint16] = np.empty(0, np.uint16)
        self._pending: dict[int, list[tuple[int, int]]] = {}
        self._pending_count = 0

    @classmethod
    def from_entries(
        cls,
        limit: int,
        bucket_ids: npt.NDArray[np.uint32],
        refs: npt.NDArray[np.uint64],
        tags: npt.NDArray[np.uint16] | None = None,
        merge_every: int = MERGE_EVERY,
    ) -> BucketIndex:
        """An index of (bucket id, ref, tag) triples given oldest first (tags 0 if not given)."""
        order = np.argsort(bucket_ids, kind="stable")
        kept_tags = np.zeros(len(order), np.uint16) if tags is None else np.asarray(tags, np.uint16)[order]
        index = cls.from_sorted(limit, (bucket_ids[order], np.asarray(refs, np.uint64)[order], kept_tags))
        index.merge_every = merge_every
        return index

    @classmethod
    def from_sorted(cls, limit: int, columns: tuple[npt.NDArray[Any], ...]) -> BucketIndex:
        """An index of ``columns``, (bucket id, ref, tag) arrays sorted by bucket id, each bucket's oldest first:
        the arrays become the index's, not copied, less the entries past each bucket's ``limit``."""
        index = cls(limit)
        bucket_ids, index._refs, index._tags = columns
        index._ids = bucket_ids
        if len(bucket_ids) > limit:
            # Each bucket oldest first: an entry goes when the one ``limit`` places on is in its bucket too (it
            # has ``limit`` newer ones there).
            index._drop(np.flatnonzero(bucket_ids[:-limit] == bucket_ids[limit:]))
        return index

    def add(self, bucket_ids: Iterable[int], ref: int, tag: int = 0) -> None:
        """Put ``ref`` with ``tag`` in each bucket as its newest entry; a bucket that holds it already holds it once
        (as its newest) from then on."""
        entry = (ref, tag)
        pending = self._pending
        for bucket in bucket_ids:
            entries = pending.get(bucket)
            if entries is None:
                pending[bucket] = [entry]
                self._pending_count += 1
                continue
            if entry in entries:
                entries.remove(entry)
            else:
                self._pending_count += 1
            entries.append(entry)
        if self._pending_count >= max(self.merge_every, len(self._ids) // 64):
            self._merge()

    def candidates(self, bucket_ids: list[int], located: Located | None = None) -> dict[int, int]:
        """The refs in any of ``bucket_ids``, with their tags. ``located``, what :meth:`locate` read of these
        buckets, saves reading the arrays again if they have not changed since."""
        if located is None or located.arrays is not self._refs:
            located = self.locate(bucket_ids)
        found: dict[int, int] = {}
        limit = self.limit
        for bucket, entries in zip(bucket_ids, located.entries, strict=True):
            pending = self._pending.get(bucket)
            if not pending:
                found.update(entries)
            elif len(entries) + len(pending) <= limit:  # all of both are among the newest: no need to merge them
                found.update(entries)
                found.update(pending)
            elif entries and len(pending) < limit:
                entries = [entry for entry in entries if entry not in pending]
                entries.extend(pending)
                found.update(entries[-limit:])
            else:
                found.update(pending[-limit:])
        return found

    def locate(self, bucket_ids: list[int]) -> Located:
        """The newest ``limit`` entries of each of ``bucket_ids`` in the arrays, read at once: for a whole batch of
        titles' buckets, one search and one copy instead of one of each per title."""
        if not len(self._ids) or not bucket_ids:
            return Located(self._refs, [[] for _ in bucket_ids])
        lows, highs = self._bounds(bucket_ids)
        starts = np.maximum(lows, np.subtract(highs, self.limit))
        counts = np.subtract(highs, starts)
        # The positions of every bucket's entries, in one array: each bucket's start, then ones.
        steps = np.ones(int(counts.sum()), np.intp)
        firsts = np.cumsum(counts) - counts
        taken = counts > 0
        steps[firsts[taken]] = starts[taken] - np.concatenate(([0], (starts + counts - 1)[taken][:-1]))
        positions = np.cumsum(steps)
        flat = list(zip(self._refs[positions].tolist(), self._tags[positions].tolist(), strict=True))
        entries = [flat[first : first + count] for first, count in zip(firsts.tolist(), counts.tolist(), strict=True)]
        return Located(self._refs, entries)

    def _bounds(self, bucket_ids: list[int]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """Where each bucket's refs start and end in the arrays."""
        count = len(bucket_ids)
        if max(bucket_ids) < 0xFFFFFFFF:  # a bucket ends where the next id would start: one search for both
            bounds = self._ids.searchsorted(np.array([*bucket_ids, *(i + 1 for i in bucket_ids)], np.uint32))
            return bounds[:count], bounds[count:]
        wanted = np.array(bucket_ids, np.uint32)
        return self._ids.searchsorted(wanted, "left"), self._ids.searchsorted(wanted, "right")

    def remove(self, refs: Collection[int]) -> None:
        """Take ``refs`` out of every bucket."""
        if not refs:
            return
        self._merge()  # a ref taken out of a bucket must not let one it pushed out come back
        gone = np.sort(np.fromiter(refs, np.uint64, len(refs)))
        stored = self._refs
        # A binary search per entry: cheaper than np.isin's sort of both arrays when the index is large.
        at = np.minimum(gone.searchsorted(stored), len(gone) - 1)
        kept = gone[at] != stored
        self._ids, self._refs, self._tags = self._ids[kept], self._refs[kept], self._tags[kept]

    def clear(self) -> None:
        """Forget every bucket."""
        self.__init__(self.limit, self.merge_every)  # type: ignore[misc]

    def as_dict(self) -> dict[int, list[int]]:
        """Every bucket's refs, newest last (for tests and benchmarks: it builds Python objects for each)."""
        return {bucket: [ref for ref, _ in entries] for bucket, entries in self.tagged().items()}

    def tagged(self) -> dict[int, list[tuple[int, int]]]:
        """Every bucket's refs with their tags, newest last."""
        self._merge()
        buckets: dict[int, list[tuple[int, int]]] = {}
        for bucket, ref, tag in zip(self._ids.tolist(), self._refs.tolist(), self._tags.tolist(), strict=True):
            buckets.setdefault(bucket, []).append((ref, tag))
        return buckets

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (the pending dict is bounded by :data:`MERGE_EVERY`)."""
        return int(self._ids.nbytes + self._refs.nbytes + self._tags.nbytes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BucketIndex) and self.tagged() == other.tagged()

    __hash__ = None  # type: ignore[assignment]

    def _merge(self) -> None:
        pending = self._pending
        if not pending:
            return
        # Built with numpy from flat iterators, not from (ref, tag) tuples: a merge runs on the event loop, inside
        # a batch's dedupe check, and making arrays from tuples was most of its pause (decision 0205).
        counts = np.fromiter(map(len, pending.values()), np.intp, len(pending))
        ids = np.repeat(np.fromiter(pending, np.uint32, len(pending)), counts)
        flat = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(pending.values())), np.uint64)
        order = np.argsort(ids, kind="stable")  # by bucket, each bucket's entries still oldest first
        ids, refs, tags = ids[order], flat[0::2][order], flat[1::2][order].astype(np.uint16)
        self._drop(self._positions_of(ids, refs))  # a ref added again moves to the newest end, as in the pending dict
        at = self._ids.searchsorted(ids, "right")
        self._ids = np.insert(self._ids, at, ids)
        self._refs, self._tags = np.insert(self._refs, at, refs), np.insert(self._tags, at, tags)
        pending.clear()
        self._pending_count = 0
        self._trim(ids[np.concatenate(([True], ids[1:] != ids[:-1]))])

    def _positions_of(self, ids: npt.NDArray[np.uint32], refs: npt.NDArray[np.uint64]) -> npt.NDArray[np.intp]:
        """Where the arrays hold each (bucket id, ref) pair given, if they do (each bucket holds at most ``limit``)."""
        lows, highs = self._ids.searchsorted(ids, "left"), self._ids.searchsorted(ids, "right")
        counts = highs - lows
        if not counts.any():
            return np.empty(0, np.intp)
        # Every position of every pair's bucket, in one array, beside the ref it is compared with.
        positions = np.arange(int(counts.sum())) + np.repeat(lows - (np.cumsum(counts) - counts), counts)
        return np.unique(positions[self._refs[positions] == np.repeat(refs, counts)])

    def _drop(self, positions: npt.NDArray[np.intp]) -> None:
        if len(positions):
            self._ids, self._refs = np.delete(self._ids, positions), np.delete(self._refs, positions)
            self._tags = np.delete(self._tags, positions)

    def _trim(self, bucket_ids: npt.NDArray[np.uint32]) -> None:
        """Drop all but the newest ``limit`` refs of each of ``bucket_ids`` (each id once)."""
        lows, highs = self._ids.searchsorted(bucket_ids, "left"), self._ids.searchsorted(bucket_ids, "right")
        over = highs - lows - self.limit
        full = over > 0
        if full.any():
            lows, over = lows[full], over[full]
            # Each full bucket's oldest ``over`` positions, lows[k] to lows[k] + over[k] - 1, in one array.
            self._drop(np.arange(int(over.sum())) + np.repeat(lows - (np.cumsum(over) - over), over))
