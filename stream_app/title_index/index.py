"""The title index every worker holds whole: the dedupe state of all input partitions in one process.

A worker's own checks write to its index at once and hand back the changes they made, which the worker publishes
to the index's compacted topic with the outputs of the same events. The other workers' changes arrive through that
topic and are applied with :meth:`TitleIndex.apply`; a starting worker reads the topic to its end
(:meth:`TitleIndex.load` until :meth:`TitleIndex.finish_loading`) before it processes an event. So a copy is
caught whichever partition or worker it arrives on, once its original's change has reached that worker.

Nothing here touches Kafka: the topic's records are plain ``(key, value)`` pairs, the key the 8-byte digest of
the title's dedupe key and the value its binary entry (``stream_app.dedupe``), or None to delete it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from stream_app.dedupe import (
    DedupeIndex,
    DedupeVerdict,
    EarlierEntries,
    Entry,
    PreparedTitle,
    TitleEntry,
    entry_fields,
    ref_of_digest,
)
from stream_app.title_index.order import RecordOrder
from stream_app.title_index.store import IndexChange, RefStore, digest_key

INDEX_KEY_BYTES: Final = 8
"""Length of an index record's key: the digest of a title's dedupe key."""
LONGEST_CLOCK_SKEW_SECONDS: Final = 86_400.0
"""The most ``TAGGER_MAX_CLOCK_SKEW_SECONDS`` may be, on any worker of a group."""
MAX_REMEMBERED_KEYS: Final = 65_536
"""Most displaced entries (:meth:`TitleIndex.apply`) a worker keeps, and most of its own changes it waits to see
come back from the topic; the oldest go first. Both are rare or short-lived: a key is displaced only when two
workers stored the same title at once, and an own change comes back within a round trip."""
APPLIED: Final = "applied"
UNCHANGED: Final = "unchanged"


class TitleIndex:
    """The whole dedupe state of the group, as this worker knows it.

    Event times are not trusted further than the worker's clock: one later than ``clock() + max_skew_seconds`` is
    taken as that, so an event dated years ahead can neither expire the index (expiry follows the newest event
    time seen) nor outlive its TTL. A title checked here is dated no earlier than ``clock() - max_skew_seconds``
    either: one whose event time is older (a backfill, a producer that sets no timestamp, one that sets an
    article's publication date) keeps copies out for the TTL from when it was seen, not for none of it.
    """

    def __init__(self, ttl_seconds: float, max_skew_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_skew_seconds = max_skew_seconds
        self.clock = clock
        self.store = RefStore()
        self.dedupe: DedupeIndex | None = None
        """None while the index loads from its topic."""
        self.stream_time = -math.inf
        """The newest trusted event time this worker has seen: the index's "now" for expiry."""
        self._overtaken: dict[bytes, None] = {}
        """Keys of entries held here that a deletion from the topic came after while they were fresh (see
        :meth:`apply`), in the order met: :meth:`expire` writes them again."""
        self._displaced: dict[bytes, bytes] = {}
        """For a key whose title entry a later record of the topic replaced with another event's, while it was
        fresh: that first entry. A check that finds the later event's own entry there (its replay, after a crash
        between storing its entry and its outputs) judges it a copy of the first, as its second look would have
        (:meth:`check_many`)."""
        self.replayed_copies = 0
        """Replayed events :meth:`check_many` judged copies of the entry stored before their own, since start."""
        self._unconfirmed: dict[bytes, bytes] = {}
        """This worker's own entries, by key, until their record comes back from the topic: until then, the entry
        held under such a key is not one the topic holds, and cannot be displaced."""
        self._order = RecordOrder()
        """Where the topic's latest entry records came, by key: what a replay is judged by (:meth:`check_many`)."""

    @property
    def loaded(self) -> bool:
        """Whether the topic was read to its end once, so checks see every title stored before this start."""
        return self.dedupe is not None

    @property
    def entries(self) -> int:
        """Entries held: titles and near copies."""
        return self.dedupe.entries if self.dedupe is not None else len(self.store)

    def trusted_time(self, event_time: float) -> float:
        """``event_time`` no later than the worker's clock plus the allowed skew, and no earlier than the epoch."""
        if not math.isfinite(event_time):
            return self.clock()
        return max(0.0, min(event_time, self.clock() + self.max_skew_seconds))

    def load(self, key: bytes | None, value: bytes | None) -> str | None:
        """Take one record of the topic while loading; returns why it was skipped, or None."""
        if key is None or len(key) != INDEX_KEY_BYTES:
            return self._check_record(key, value)
        held = self.store.titles.get(key)
        if value is None:
            # No worker deletes an entry before its TTL ends by its clock plus the skew, each clock within the skew
            # of this one's: a deletion of an entry fresher than that came after the title was stored again (its
            # owner's write-back, lost in a crash) or from no worker.
            if self._overtaken_by_deletion(key, held, self.clock() + 2 * self.max_skew_seconds):
                return None
            self.store.titles.pop(key, None)
            self._displaced.pop(key, None)
            return None
        entry = entry_fields(value)
        reason = self._check_entry(entry, held)
        if reason is None:
            self._order.note(key)
            self._note_displaced(key, held, entry)
            self.store.titles[key] = value
        return reason

    def _fresh(self, entry: Entry, at: float) -> bool:
        """Whether ``entry``'s TTL has not ended at the event time ``at``."""
        return entry.event_time + self.ttl_seconds >= at

    def _overtaken_by_deletion(self, key: bytes, held: bytes | None, now: float) -> bool:
        """Whether the entry ``held`` under ``key`` outlives a deletion that came after it in the topic, being fresh
        at ``now``; if so it stays, noted for :meth:`expire` to write again."""
        old = entry_fields(held)
        if old is None or not self._fresh(old, now):
            return False
        self._overtaken[key] = None
        return True

    def finish_loading(self) -> None:
        """Index what was loaded: checks can start."""
        self.dedupe = DedupeIndex(self.store, self.ttl_seconds)
        self.store.take_changes()

    def check(
        self, event_id: str, title: str, description: str | None, event_time: float
    ) -> tuple[DedupeVerdict, list[IndexChange]]:
        """Judge a title (see :meth:`DedupeIndex.check_and_add`) and return the changes it made to the index."""
        return self.check_many([(event_id, title, description, event_time)])[0]

    def check_many(
        self, titles: Sequence[tuple[str, str, str | None, float]]
    ) -> list[tuple[DedupeVerdict, list[IndexChange]]]:
        """:meth:`check` each ``(event_id, title, description, event_time)`` in turn (a title may copy one before
        it in the batch), the batch prepared at once (:meth:`DedupeIndex.prepare`)."""
        dedupe = self._ready()
        prepared = dedupe.prepare([(title, description) for _, title, description, _ in titles])
        judged = []
        floor = self.clock() - self.max_skew_seconds
        for (event_id, title, description, event_time), ready in zip(titles, prepared, strict=True):
            trusted = self.trusted_time(max(event_time, floor))  # a NaN stays one, and is taken as the clock
            self.stream_time = max(self.stream_time, trusted)
            verdict = dedupe.check_and_add(event_id, title, description, trusted, ready)
            if verdict.match == "exact" and (own := self._displaced_own(ready.digest, event_id, trusted)) is not None:
                # Its own entry came first in the topic, and an exact copy's entry replaced it there: its worker
                # crashed before its second look, and this is its replay. Its entry goes back and it is shown; the
                # copy's replay, or its second look, then finds it.
                dedupe.apply(ready.ref, own)
                verdict = DedupeVerdict(verdict.dedupe_key, None, None, 0.0)
            changes = self.store.take_changes()
            if not changes and verdict.duplicate_of is None and ready.words:
                # Its own entry, held: a replay, which the second look of its first check may never have judged.
                again = self._judge_replay(dedupe, ready, (event_id, title, description, trusted))
                if again is not None:
                    verdict, changes = again, self.store.take_changes()
                    self.replayed_copies += 1
            self._await_own(changes)
            judged.append((verdict, changes))
        return judged

    def _judge_replay(
        self, dedupe: DedupeIndex, ready: PreparedTitle, event: tuple[str, str, str | None, float]
    ) -> DedupeVerdict | None:
        """Judge a title whose own entry the index holds, as the second look would have: against another event's
        entry its key held first (:attr:`_displaced`), then against the title entries sharing its buckets whose
        records came before its own in the topic, as far as the order of the latest records tells
        (:class:`~stream_app.title_index.order.RecordOrder`). None if it stays new, or if its own record is too old
        for the order to be known."""
        displaced = self._displaced.get(ready.digest)
        if displaced is not None:
            again = dedupe.recheck(ready.ref, event, self.earlier_entries([(0, ready.digest, displaced)]), 1)
            if again is not None:
                return again
        near = dedupe.sharing_buckets(ready.ref)
        if not near:
            return None
        # Where the order is in doubt, the title stays new: its own record counts from the earliest kept under its
        # key, each other entry from the latest kept under its own.
        own = self._order.positions(ready.digest)
        if not own:
            return None
        earlier = []
        for ref, value in near:
            key = digest_key(ref)
            if key in self._unconfirmed:
                continue  # this worker's own entry, not yet in the topic: after the replayed one's
            positions = self._order.positions(key)
            earlier.append((max(positions) if positions else -1, ref, value))
        return dedupe.recheck(ready.ref, event, EarlierEntries(earlier), min(own))

    def _displaced_own(self, key: bytes, event_id: str, event_time: float) -> bytes | None:
        """The entry :attr:`_displaced` keeps under ``key`` if it is ``event_id``'s own title, fresh at
        ``event_time``."""
        displaced = self._displaced.get(key)
        entry = entry_fields(displaced)
        if isinstance(entry, TitleEntry) and entry.event_id == event_id and self._fresh(entry, event_time):
            return displaced
        return None

    @staticmethod
    def earlier_entries(stored: Iterable[tuple[int, bytes, bytes]]) -> EarlierEntries:
        """The entries (position, key, value) other workers stored in the topic, as :meth:`recheck` takes them."""
        return EarlierEntries((position, ref_of_digest(key), value) for position, key, value in stored)

    def recheck(
        self, event: tuple[str, str, str | None, float], key: bytes, earlier: EarlierEntries, before: int
    ) -> tuple[DedupeVerdict, list[IndexChange]] | None:
        """Judge again an ``(event_id, title, description, event_time)`` :meth:`check_many` stored an entry for under
        ``key``, against the entries of ``earlier`` other workers stored in the topic before its own, which is at
        ``before`` among them (see :meth:`DedupeIndex.recheck`): None if its verdict stands, else its verdict as a
        copy and the change that leaves its entry as one check at a time would have."""
        event_id, title, description, event_time = event
        trusted = self.trusted_time(max(event_time, self.clock() - self.max_skew_seconds))
        verdict = self._ready().recheck(ref_of_digest(key), (event_id, title, description, trusted), earlier, before)
        changes = self.store.take_changes()
        self._await_own(changes)
        return None if verdict is None else (verdict, changes)

    def expire(self) -> list[IndexChange]:
        """Delete the entries expired by the newest event time seen; returns the deletions, then each entry still
        held whose deletion in the topic came after it (:meth:`apply`), written again so that the topic's compacted
        log, which a starting worker loads, ends with the entry rather than the deletion."""
        dedupe = self._ready()
        if self.stream_time != -math.inf:
            dedupe.expire(self.stream_time)
        changes = self.store.take_changes()
        for key, value in list(self._displaced.items()):
            entry = entry_fields(value)
            if entry is None or not self._fresh(entry, self.stream_time):
                del self._displaced[key]
        overtaken, self._overtaken = self._overtaken, {}
        for key in overtaken:
            held = self.store.titles.get(key)
            if held is not None:
                changes.append(IndexChange(key, held))
        return changes

    def apply(self, key: bytes | None, value: bytes | None) -> str:
        """Apply one record of the topic: :data:`APPLIED`, :data:`UNCHANGED` (this worker's own change coming
        back, or one it holds already), or the reason it was skipped (one of :data:`stream_app.errors.SKIP_REASONS`).

        Every record is applied in the topic's order, this worker's own included, so that two workers that wrote
        the same title at once both end with the topic's last value. A deletion removes only an entry this worker
        holds as expired: the title may have been seen again since the other worker expired it, here or on a third
        worker whose write reached the topic first. The topic's log then ends with the deletion, so such an entry
        is noted for :meth:`expire` to write again, and so is an entry held under the key of a record skipped."""
        dedupe = self._ready()
        if key is None or len(key) != INDEX_KEY_BYTES:
            return self._check_record(key, value) or "invalid_value"  # never None for such a key
        held = self.store.titles.get(key)
        own = self._unconfirmed.get(key)
        if own is not None and own == value:
            del self._unconfirmed[key]  # this worker's own entry, back from the topic
        if value is not None:
            self._order.note(key)
        if held == value:
            # Most records are this worker's own writes coming back: the entry held was checked when it was stored,
            # and its time seen then, so an equal value (or a deletion of a title not held) needs no check.
            return UNCHANGED
        entry = None if value is None else entry_fields(value)
        if value is not None and (reason := self._check_entry(entry, held)) is not None:
            if held is not None:  # the log now ends with the skipped record: write the entry again, as below
                self._overtaken[key] = None
            return reason
        if value is None:
            if self._overtaken_by_deletion(key, held, self.stream_time):
                return UNCHANGED
            self._displaced.pop(key, None)
        elif own is None or own == value:
            # The entry held is the topic's: this record comes after it. (An own entry still on its way would come
            # after this record, and its second look judges it.)
            self._note_displaced(key, held, entry)
        with self.store.unrecorded():
            dedupe.apply_read(ref_of_digest(key), int.from_bytes(key, "big"), value, entry, held)
        return APPLIED

    def _note_displaced(self, key: bytes, held: bytes | None, new: Entry | None) -> None:
        """Remember ``held``, the topic's entry under ``key``, if ``new``, the entry after it in the topic, gives the
        key to another event's title while ``held`` is fresh; the first such entry stays until it expires."""
        if held is None:
            return
        old = entry_fields(held)
        if not (isinstance(old, TitleEntry) and isinstance(new, TitleEntry)) or old.event_id == new.event_id:
            return
        if not self._fresh(old, new.event_time):
            return  # expired: the later title was new
        first = entry_fields(self._displaced.get(key))
        if first is not None and self._fresh(first, new.event_time):
            return
        self._displaced[key] = held
        _bound(self._displaced)

    def _await_own(self, changes: Iterable[IndexChange]) -> None:
        for change in changes:
            if change.value is not None:
                self._unconfirmed.pop(change.key, None)  # to the newest end
                self._unconfirmed[change.key] = change.value
                _bound(self._unconfirmed)

    def _check_record(self, key: bytes | None, value: bytes | None, held: bytes | None = None) -> str | None:
        """Why a record of the index topic cannot be applied over the entry ``held`` under its key, or None if it
        can. An entry's event time advances :attr:`stream_time`, so a worker that sees few events still expires what
        the others wrote."""
        if key is None:
            return "missing_field"
        if len(key) != INDEX_KEY_BYTES:
            return "invalid_value"
        return None if value is None else self._check_entry(entry_fields(value), held)

    def _check_entry(self, entry: Entry | None, held: bytes | None) -> str | None:
        """:meth:`_check_record` of a record with a value, ``entry`` what :func:`entry_fields` read of it."""
        # The writer dated it no later than its clock and its own skew, which may be larger than ours: only an
        # entry past the clock, twice the longest skew any worker may have (one for the writer's clock, one for
        # its setting) and the second entries round their times up to comes from no worker, and would never
        # expire.
        if entry is None or entry.event_time > self.clock() + 2 * LONGEST_CLOCK_SKEW_SECONDS + 1.0:
            return "invalid_value"
        self.stream_time = max(self.stream_time, self.trusted_time(entry.event_time))
        # Nor does any worker date an entry further before the one held than two clocks and skews put them
        # apart: a title stored again after its TTL is dated later. Such an entry would make a fresh title expire.
        old = entry_fields(held) if held is not None else None
        if old is not None and entry.event_time < old.event_time - 2 * LONGEST_CLOCK_SKEW_SECONDS - 1.0:
            return "invalid_value"
        return None

    def _ready(self) -> DedupeIndex:
        if self.dedupe is None:
            raise RuntimeError("the title index is still loading")
        return self.dedupe


def _bound(kept: dict[bytes, bytes]) -> None:
    """Drop the oldest of ``kept`` past :data:`MAX_REMEMBERED_KEYS`."""
    while len(kept) > MAX_REMEMBERED_KEYS:
        del kept[next(iter(kept))]
