"""The dedupe index: judges each title against those seen within the TTL, and keeps the store, its buckets
and its expiry queue in step.

:meth:`DedupeIndex.check_and_add` looks up the title's exact key first; failing that, the refs that share
its LSH buckets (:mod:`~stream_app.dedupe.signatures`), each confirmed or vetoed by
:func:`~stream_app.dedupe.typo.confirm`. Entries another worker wrote reach the index through
:meth:`DedupeIndex.apply`; :meth:`DedupeIndex.expire` deletes those past the TTL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from typing import Any, Final, NamedTuple

from stream_app.dedupe.buckets import Located
from stream_app.dedupe.earlier import EarlierEntries
from stream_app.dedupe.entries import (
    TITLE_MARK,
    WORDS,
    CopyEntry,
    Entry,
    TitleEntry,
    clamp_time,
    copy_value,
    entry_fields,
    title_bytes,
    unpack_buckets,
)
from stream_app.dedupe.normalize import (
    canonical_form,
    digest_of_ref,
    form_and_numbers,
    key_digest,
    ref_number,
    ref_of,
    ref_of_digest,
    title_words,
)
from stream_app.dedupe.rebuild import scan
from stream_app.dedupe.signatures import BANDS, Incoming, batch_buckets, title_tag
from stream_app.dedupe.typo import confirm

MATCH_KINDS: Final = ("exact", "near")
"""The kinds of match a :class:`DedupeVerdict` reports."""


# A named tuple: one is made for every event, at a fraction of a frozen dataclass's cost.
class DedupeVerdict(NamedTuple):
    """What the index made of one title."""

    dedupe_key: str
    duplicate_of: str | None
    """Id of the first-seen event this one copies, None if it is unique."""
    match: str | None
    """``"exact"``, ``"near"``, or None if unique."""
    similarity: float
    """1.0 for exact, the title similarity for near, 0.0 if unique."""


class PreparedTitle(NamedTuple):
    """What a check needs of a title and its description before it looks at the index (:meth:`DedupeIndex.prepare`)."""

    words: list[str]
    digest: bytes
    """Its dedupe key's digest."""
    ref: str
    """The store's key for it (:func:`~stream_app.dedupe.normalize.ref_of_digest` of ``digest``)."""
    bucketed: tuple[list[int], bytes] | None = None
    """The title's LSH buckets and the description's signature; None if not made (a title with no words, or
    one the index held when it was prepared), and then made by the check if it needs them."""
    located: Located | None = None
    """The entries of its buckets in the bucket index's arrays, when it was prepared."""


class DedupeIndex:
    """Titles seen within the TTL, kept in ``store`` (see :mod:`~stream_app.dedupe.entries` for its layout).

    Its LSH buckets are indexed from ``store`` when it is made and kept up to date by its own writes and by
    those of other workers given to :meth:`apply`: keep one index per store, and write to the store only
    through it.
    """

    def __init__(self, store: MutableMapping[str, Any], ttl_seconds: float) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        self.buckets, self.expiry, self._unreadable = scan(store)
        self.entries = len(self.expiry) + len(self._unreadable)
        """Entries in ``store``, counted as they are written and deleted: a RocksDB store would count them by
        reading every key."""
        self._unindexed: set[int] = set()
        """Refs deleted from the store but still in the buckets: taken out in bulk (look-ups skip them)."""
        self._read: dict[str, bytes | None] = {}
        """What the last :meth:`prepare` read from the store, less the refs written or deleted since: a check of a
        prepared title reads its ref from here (every write to the store goes through this index)."""

    def check_and_add(
        self,
        event_id: str,
        title: str,
        description: str | None,
        event_time: float,
        prepared: PreparedTitle | None = None,
    ) -> DedupeVerdict:
        """Judge a title against those seen within the TTL before ``event_time``; remember it if it is new.

        A replay of the stored event itself (same id) is not a duplicate; a duplicate never replaces its
        original. A title with no words at all is never a duplicate and is not remembered. Times beyond what an
        entry stores (before 1970, after 2106, NaN) are clamped into it. ``prepared``, what :meth:`prepare` made
        of this title and description, saves making it again.
        """
        words, digest, ref, bucketed, located = prepared or self._prepared(title)
        event_time = clamp_time(event_time)
        key = digest.hex()
        if not words:
            return DedupeVerdict(key, None, None, 0.0)
        stored = self._read[ref] if prepared is not None and ref in self._read else self.store.get(ref)
        first = entry_fields(stored)
        if first is not None and self._fresh(first, event_time):
            if isinstance(first, CopyEntry):
                if self._live_copy(first, event_time):
                    if first.original_id == event_id:
                        # Its own event again, titled as another event's copy of it was (a typo fixed upstream):
                        # as a replay, not a copy of itself. The copy's entry stays.
                        return DedupeVerdict(key, None, None, 0.0)
                    return DedupeVerdict(key, first.original_id, "near", first.similarity)
            elif first.event_id == event_id:
                return DedupeVerdict(key, None, None, 0.0)
            else:
                return DedupeVerdict(key, first.event_id, "exact", 1.0)
        incoming = Incoming(words, description, bucketed)
        buckets = incoming.buckets()
        number = int.from_bytes(digest, "big")
        candidates = self._candidates(event_id, number, buckets, incoming, event_time, located)
        near = _first_confirmed(incoming, candidates, event_time)
        if stored is None:
            self.entries += 1
        self._read.pop(ref, None)
        if near is not None:
            self._store_copy(ref, number, near, over_title=isinstance(first, TitleEntry))  # an expired title's
            return DedupeVerdict(key, near.original_id, "near", near.similarity)
        stored_hashes = b"".join(sorted(incoming.hashes)) if len(words) <= WORDS else b""
        self.store[ref] = title_bytes(event_id, event_time, stored_hashes, incoming.signature, buckets)
        self.expiry.push(event_time, number)
        self._unindexed.discard(number)
        # A ref whose earlier title expired may still be in some buckets: adding it again moves it to their newest end.
        self.buckets.add(buckets, number, incoming.tag if stored_hashes else 0)
        return DedupeVerdict(key, None, None, 0.0)

    def prepare(self, titles: Sequence[tuple[str, str | None]]) -> list[PreparedTitle]:
        """Each ``(title, description)`` prepared for :meth:`check_and_add`, the batch's work done at once: each
        title's entry read (a check reads it again only if the batch wrote it since), and the MinHash signatures,
        LSH buckets and bucket entries of the titles the index does not hold yet, at a fraction of the cost of one
        by one (titles held already are most often exact copies, which need none)."""
        self._read = {}
        prepared: list[PreparedTitle] = []
        unsigned: list[int] = []
        numbers: list[str] = []
        for title, _ in titles:
            words = title_words(title)
            form, digits = form_and_numbers(words)
            digest = key_digest(form)
            ref = ref_of_digest(digest)
            if words:
                stored = self._read[ref] = self.store.get(ref)
                if stored is None:
                    unsigned.append(len(prepared))
                    numbers.append(digits)
            prepared.append(PreparedTitle(words, digest, ref))
        bucketed = batch_buckets([(prepared[index].words, titles[index][1]) for index in unsigned], numbers)
        located = self.buckets.locate([bucket for buckets, _ in bucketed for bucket in buckets])
        for n, (index, made) in enumerate(zip(unsigned, bucketed, strict=True)):
            words, digest, ref, *_ = prepared[index]
            entries = Located(located.arrays, located.entries[n * BANDS : (n + 1) * BANDS])
            prepared[index] = PreparedTitle(words, digest, ref, made, entries)
        return prepared

    @staticmethod
    def _prepared(title: str) -> PreparedTitle:
        words = title_words(title)
        digest = key_digest(canonical_form(words))
        return PreparedTitle(words, digest, ref_of_digest(digest))

    def check_many(self, titles: Sequence[tuple[str, str, str | None, float]]) -> list[DedupeVerdict]:
        """:meth:`check_and_add` of each ``(event_id, title, description, event_time)`` in turn, with the same
        verdicts and writes (a title may copy one before it in the batch), the batch prepared at once
        (:meth:`prepare`)."""
        prepared = self.prepare([(title, description) for _, title, description, _ in titles])
        return [
            self.check_and_add(event_id, title, description, event_time, ready)
            for (event_id, title, description, event_time), ready in zip(titles, prepared, strict=True)
        ]

    def recheck(
        self,
        ref: str,
        event: tuple[str, str, str | None, float],
        earlier: EarlierEntries,
        before: int,
    ) -> DedupeVerdict | None:
        """Judge again a title that :meth:`check_and_add` found new and stored, against the entries of ``earlier``
        placed before ``before``: those other writers stored before its own entry under ``ref``, which its check did
        not see. ``event`` is ``(event_id, title, description, event_time)``, as :meth:`check_many` takes it. None
        if it stays new; else its verdict as a copy, and its entry here replaced as :meth:`check_and_add` would have
        left it had it seen them: the original's own entry under an exact copy's ref, a near copy's entry under a
        near copy's.

        An exact match is looked for first, then a near one, as :meth:`check_and_add` does; entries of its own event
        and those past the TTL count for nothing."""
        event_id, title, description, event_time = event
        event_time = clamp_time(event_time)
        digest = digest_of_ref(ref)
        if digest is None:
            return None
        key = digest.hex()
        for position, value, entry in earlier.by_ref.get(ref, ()):
            if position >= before or not self._fresh(entry, event_time):
                continue
            if isinstance(entry, CopyEntry) and entry.original_id != event_id:
                verdict = DedupeVerdict(key, entry.original_id, "near", entry.similarity)
            elif isinstance(entry, TitleEntry) and entry.event_id != event_id:
                verdict = DedupeVerdict(key, entry.event_id, "exact", 1.0)
            elif isinstance(entry, TitleEntry) and isinstance(entry_fields(self.store.get(ref)), CopyEntry):
                # This very event, stored as a title by another worker first (an upstream's retry reached two), where
                # its check here stored it as a near copy of another title: the event stands as that worker's title,
                # and this delivery is its copy. Left as a copy's entry, neither key would hold a title.
                verdict = DedupeVerdict(key, event_id, "exact", 1.0)
            else:
                continue
            self.apply(ref, value)  # the original's entry back in its place, and in the topic's log last
            return verdict
        held = entry_fields(self.store.get(ref))
        if not isinstance(held, TitleEntry):
            return None  # its own entry, whose buckets are the title's, is gone already
        candidates: dict[str, TitleEntry] = {}
        for bucket in unpack_buckets(held.buckets):
            for position, other_ref, other in earlier.by_bucket.get(bucket, ()):
                if position < before and other.event_id != event_id and self._fresh(other, event_time):
                    candidates.setdefault(other_ref, other)
        if not candidates:
            return None
        incoming = Incoming(title_words(title), description)
        incoming.buckets()  # makes its description's signature
        near = _first_confirmed(incoming, candidates.items(), event_time)
        if near is None:
            return None
        self._read.pop(ref, None)
        self._store_copy(ref, int.from_bytes(digest, "big"), near, over_title=True)
        return DedupeVerdict(key, near.original_id, "near", near.similarity)

    def sharing_buckets(self, ref: str) -> list[tuple[str, bytes]]:
        """The ``(ref, value)`` of each other entry in an LSH bucket of the title entry under ``ref`` (the newest
        :data:`BUCKET_LIMIT` of each bucket, as a check sees them); none if ``ref`` holds no title entry."""
        held = entry_fields(self.store.get(ref))
        if not isinstance(held, TitleEntry):
            return []
        own = ref_number(ref)
        found = []
        for number in self.buckets.candidates(unpack_buckets(held.buckets)):
            if number == own:
                continue
            other = ref_of(number)
            value = self.store.get(other)
            if isinstance(value, bytes):
                found.append((other, value))
        return found

    def _store_copy(self, ref: str, number: int, near: CopyEntry, *, over_title: bool) -> None:
        """Store a near copy's entry under ``ref`` (``number``), over a title's entry if ``over_title``."""
        self.store[ref] = copy_value(near)
        self.expiry.push(near.event_time, number)
        if over_title:
            self._unindexed.add(number)  # the title's bucket entries: a near copy's ref now

    def apply(self, ref: str, value: bytes | None) -> None:
        """Take in a change another index made to its store (replicated through a topic): write ``value`` under
        ``ref``, or delete ``ref`` if ``value`` is None (a tombstone), and update the buckets, the expiry queue and
        :attr:`entries` as :meth:`check_and_add` and :meth:`expire` do for their own writes.

        A ref or value of no known shape is ignored (the topic is open to any writer); a value already stored
        changes nothing.
        """
        if not isinstance(ref, str) or digest_of_ref(ref) is None:
            return
        entry = None if value is None else entry_fields(value)
        if value is None or entry is not None:
            self.apply_read(ref, ref_number(ref), value, entry, self.store.get(ref))

    def apply_read(self, ref: str, number: int, value: bytes | None, entry: Entry | None, stored: bytes | None) -> None:
        """:meth:`apply` of a change its caller has read already: ``ref`` is a ref, ``number`` its
        :func:`ref_number`, ``entry`` the :func:`entry_fields` of ``value`` (None if ``value`` is), and ``stored``
        what the store holds under ``ref``."""
        if stored == value:
            return
        if value is None:
            del self.store[ref]
            self._read.pop(ref, None)
            self.entries -= 1
            self._unindexed.add(number)
            return
        if entry is None:
            return
        if stored is None:
            self.entries += 1
        self.store[ref] = value
        self._read.pop(ref, None)
        self.expiry.push(entry.event_time, number)
        if isinstance(entry, TitleEntry):
            self._unindexed.discard(number)
            self.buckets.add(unpack_buckets(entry.buckets), number, title_tag(entry.hashes))
        elif stored is not None and isinstance(entry_fields(stored), TitleEntry):
            self._unindexed.add(number)  # a near copy in a title's place: its bucket entries are no title's now

    def expire(self, now: float) -> int:
        """Delete the entries whose event time is more than the TTL before ``now``, and keys of no known shape
        (nothing this package wrote); returns the number of titles deleted. A near copy stops counting when its
        original expires and is deleted when its own time does. Costs what it deletes, not what the store holds."""
        now = clamp_time(now)
        for key in self._unreadable:
            if key in self.store and (digest_of_ref(key) is None or entry_fields(self.store[key]) is None):
                del self.store[key]
                self._read.pop(key, None)
                self.entries -= 1
        self._unreadable = []
        removed = 0
        for number in self.expiry.pop_before(now - self.ttl_seconds):
            key = ref_of(number)
            entry = entry_fields(self.store.get(key))
            if isinstance(entry, TitleEntry) and not self._fresh(entry, now):
                removed += 1
            elif not isinstance(entry, CopyEntry) or self._fresh(entry, now):
                # Gone already, or written again since: a near copy's entry stays until its own time, even when this
                # record was a title's that a deletion from the topic took out and the copy's came after it.
                continue
            del self.store[key]
            self._read.pop(key, None)
            self.entries -= 1
            self._unindexed.add(number)
        if self._unindexed and 8 * len(self._unindexed) >= len(self.expiry):
            self.buckets.remove(self._unindexed)
            self._unindexed = set()
        return removed

    def _fresh(self, entry: Entry, event_time: float) -> bool:
        return bool(entry.event_time + self.ttl_seconds >= event_time)

    def _live_copy(self, copy: CopyEntry, event_time: float) -> bool:
        """Whether a near copy's entry still stands: it and its original are fresh, and the original's ref still
        holds that original (a title seen again after its TTL is stored anew, under another event)."""
        original = entry_fields(self.store.get(copy.original_ref))
        if not isinstance(original, TitleEntry) or original.event_id != copy.original_id:
            return False
        return self._fresh(copy, event_time) and self._fresh(original, event_time)

    def _candidates(
        self,
        event_id: str,
        number: int,
        buckets: list[int],
        incoming: Incoming,
        event_time: float,
        located: Located | None,
    ) -> Iterator[tuple[str, TitleEntry]]:
        """The fresh titles of other events in ``buckets`` that could be one typo from ``incoming``."""
        words, tag = len(incoming.hashes), incoming.tag
        for candidate_number, candidate_tag in self.buckets.candidates(buckets, located).items():
            if (
                candidate_number == number
                or (candidate_tag & ~tag).bit_count() > 1
                or (tag & ~candidate_tag).bit_count() > 1
            ):
                continue  # more than one word differs: no need to read the entry
            candidate = ref_of(candidate_number)
            value = self.store.get(candidate)
            if isinstance(value, bytes) and value and value[0] & TITLE_MARK and value[0] & WORDS != words:
                continue  # a typo keeps the number of words: the head byte tells without reading the entry
            entry = entry_fields(value)
            if not isinstance(entry, TitleEntry):
                continue  # gone, or the ref was reused by a near copy (its title expired and came back as one)
            if entry.event_id == event_id or not self._fresh(entry, event_time):
                continue
            yield candidate, entry


def _first_confirmed(
    incoming: Incoming, candidates: Iterable[tuple[str, TitleEntry]], event_time: float
) -> CopyEntry | None:
    """The near copy's entry of ``incoming``, seen at ``event_time``, for the first-seen of the ``candidates``
    (ref, entry) one typo away from it (:func:`~stream_app.dedupe.typo.confirm`), the most alike among those first
    seen at once; None if none is."""
    confirmed: list[tuple[float, float, str, str]] = []
    for ref, entry in candidates:
        similarity = confirm(incoming, entry)
        if similarity is not None:
            confirmed.append((entry.event_time, -similarity, entry.event_id, ref))
    if not confirmed:
        return None
    _, negative_similarity, original, original_ref = min(confirmed)
    return CopyEntry(original, event_time, original_ref, round(-negative_similarity, 4))
