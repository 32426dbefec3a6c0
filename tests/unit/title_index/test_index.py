"""The title index every worker holds whole: checks return the changes to publish, another worker's changes
catch copies here, loading rebuilds the index, deletions and bad records are handled, and event times are not
trusted past the worker's clock."""

from __future__ import annotations

import itertools

import pytest

from stream_app.dedupe import ref_of_digest
from stream_app.dedupe.entries import CopyEntry, copy_value
from stream_app.title_index.index import APPLIED, LONGEST_CLOCK_SKEW_SECONDS, UNCHANGED, TitleIndex
from stream_app.title_index.store import IndexChange

TTL = 30 * 86400.0
NOW = 1_800_000_000.0
SKEW = 300.0
TITLE = "Realtime object detection with transformers"
TYPO = "Realtime object detecton with transformers"
SECOND_LOOK_DESCRIPTION = "A detector that runs on video streams in real time."


def index(clock: float = NOW) -> TitleIndex:
    made = TitleIndex(TTL, SKEW, clock=lambda: clock)
    made.finish_loading()
    return made


def replicate(changes: list[IndexChange], to: TitleIndex) -> None:
    for change in changes:
        assert to.apply(change.key, change.value) == APPLIED


def test_a_new_title_returns_one_change_and_a_copy_none() -> None:
    worker = index()
    verdict, changes = worker.check("1", TITLE, None, NOW)
    assert verdict.duplicate_of is None and len(changes) == 1 and changes[0].value
    verdict, changes = worker.check("2", TITLE.upper(), None, NOW + 1)
    assert (verdict.duplicate_of, verdict.match, changes) == ("1", "exact", [])


def test_a_batch_checked_at_once_returns_each_event_s_verdict_and_changes_as_one_by_one() -> None:
    """The worker publishes each event's index changes with its output: a batch must not lump them together."""
    batch = [("1", TITLE, "A detector.", NOW), ("2", TYPO, "A detector.", NOW + 1), ("3", "!!!", None, NOW + 2),
             ("4", TITLE.lower(), None, NOW + 3), ("5", "Another title entirely", None, NOW + 4)]  # fmt: skip
    batched, one_by_one = index(), index()
    got = batched.check_many(batch)
    assert got == [one_by_one.check(*event) for event in batch]
    assert [len(changes) for _, changes in got] == [1, 1, 0, 0, 1]
    assert [verdict.match for verdict, _ in got] == [None, "near", None, "exact", None]


@pytest.mark.parametrize(("copy", "match"), [(TITLE, "exact"), (TYPO, "near")])
def test_a_copy_is_caught_on_the_worker_that_received_the_original_s_changes(copy: str, match: str) -> None:
    first, second = index(), index()
    _, changes = first.check("1", TITLE, "A detector.", NOW)
    verdict, _ = second.check("0", "Something else entirely new", None, NOW)  # this worker's own state
    replicate(changes, second)
    verdict, _ = second.check("2", copy, "A detector.", NOW + 5)
    assert (verdict.duplicate_of, verdict.match) == ("1", match)


def test_a_starting_worker_loads_the_topic_and_catches_copies_of_every_title_in_it() -> None:
    writer = index()
    topic: list[IndexChange] = []
    for number, title in enumerate(["Graph neural networks for molecules", TITLE, "Speech recognition at scale"]):
        topic += writer.check(str(number), title, None, NOW + number)[1]
    # A title that expired, and that a worker deleted, is not loaded.
    _, gone = index(clock=NOW - TTL - 3600).check("9", "A title that was deleted", None, NOW - TTL - 3600)
    topic += gone + [IndexChange(gone[0].key, None)]
    starting = TitleIndex(TTL, SKEW, clock=lambda: NOW)
    assert not starting.loaded
    for change in topic:
        assert starting.load(change.key, change.value) is None
    starting.finish_loading()
    assert starting.loaded and starting.entries == 3
    assert starting.check("x", TYPO, None, NOW + 10)[0].duplicate_of == "1"
    assert starting.check("y", "A title that was deleted", None, NOW + 10)[0].duplicate_of is None


def loaded(topic: list[IndexChange]) -> TitleIndex:
    """A worker started at ``NOW`` that loaded ``topic``."""
    starting = TitleIndex(TTL, SKEW, clock=lambda: NOW)
    for change in topic:
        assert starting.load(change.key, change.value) is None
    starting.finish_loading()
    return starting


def test_a_starting_worker_keeps_a_fresh_title_a_deletion_came_after_and_writes_it_back() -> None:
    """A title stored again can land in the topic before its owner's deletion of the expired one; the owner writes
    it back at its next sweep, but not if it crashes first, nor for a deletion no worker wrote. A worker that loads
    the topic then must still hold the title, and write it back if it is the owner."""
    _, stored = index().check("1", TITLE, None, NOW)
    starting = loaded([*stored, IndexChange(stored[0].key, None)])
    assert starting.entries == 1
    assert starting.check("2", TYPO, None, NOW + 10)[0].duplicate_of == "1"
    assert IndexChange(stored[0].key, stored[0].value) in starting.expire()


def test_a_deletion_of_a_title_within_two_skews_of_its_ttl_s_end_is_loaded() -> None:
    """A worker whose clock is ahead by the allowed skew may have expired it: the deletion stands."""
    stored_at = NOW - TTL + 2 * SKEW - 1
    _, stored = index(clock=stored_at).check("1", TITLE, None, stored_at)
    starting = loaded([*stored, IndexChange(stored[0].key, None)])
    assert starting.entries == 0
    assert starting.expire() == []


def test_expiry_deletes_expired_titles_and_returns_the_deletions() -> None:
    worker = index()
    _, old = worker.check("1", TITLE, None, NOW)
    later = NOW + TTL + 10
    worker.clock = lambda: later
    worker.check("2", "A title seen just now", None, later)
    deleted = worker.expire()
    assert deleted == [IndexChange(old[0].key, None)]
    assert worker.entries == 1
    assert worker.check("3", TITLE, None, later)[0].duplicate_of is None


def test_another_worker_s_deletion_removes_only_what_this_worker_holds_as_expired() -> None:
    first, second = index(), index()
    _, changes = first.check("1", TITLE, None, NOW)
    replicate(changes, second)
    later = NOW + TTL + 10
    second.clock = lambda: later
    second.check("2", "Anything at all to move time", None, later)
    second.apply(changes[0].key, None)
    assert second.entries == 1  # expired here too: deleted
    # A title seen again here since the other worker expired it stays.
    _, again = second.check("3", TITLE, None, later)
    assert second.apply(again[0].key, None) == UNCHANGED
    assert second.check("4", TITLE, None, later + 1)[0].duplicate_of == "3"


def test_an_entry_of_a_fresh_title_dated_back_past_any_skew_is_skipped_and_the_title_written_again() -> None:
    """One record re-dated to 1970 replaced a fresh title's entry on every worker: its next sweep deleted the title, the
    owner published the deletion, and its copies were shown, also on workers started later."""
    first, second = index(), index()
    _, changes = first.check("1", TITLE, "A detector.", NOW)
    replicate(changes, second)
    key, value = changes[0].key, changes[0].value
    backdated = value[:1] + (1).to_bytes(4, "big") + value[5:]  # the entry's time, in seconds since 1970, is 1
    assert second.apply(key, backdated) == "invalid_value"
    second.check("2", "Anything at all to move time", None, NOW + 2)
    assert second.expire() == [IndexChange(key, value)]  # written again: the topic's log ends with the real entry
    assert second.check("3", TITLE, "A detector.", NOW + 3)[0].duplicate_of == "1"
    starting = TitleIndex(TTL, SKEW, clock=lambda: NOW + 3)
    assert starting.load(key, value) is None
    assert starting.load(key, backdated) == "invalid_value"
    starting.finish_loading()
    assert starting.check("4", TYPO, "A detector.", NOW + 3)[0].duplicate_of == "1"
    # A title stored again after its TTL is dated later, and replaces the entry as before.
    later = NOW + TTL + 10
    third = index(clock=later)
    replicate(changes, third)
    first.clock = lambda: later
    _, again = first.check("5", TITLE, None, later)
    assert third.apply(again[0].key, again[0].value) == APPLIED


def test_a_title_written_again_before_another_worker_s_deletion_reached_the_topic_is_kept_for_starting_workers() -> (
    None
):
    """The owner of an expired title deletes it from the topic; a second worker saw the title again meanwhile, and its
    write reached the topic first. The live workers keep the new entry, and the owner writes it once more, so the
    compacted log ends with it and a worker started later still catches copies."""
    owner, other = index(), index()
    topic: list[IndexChange] = []
    _, first = owner.check("1", TITLE, None, NOW)
    topic += first
    replicate(first, other)
    later = NOW + TTL + 10
    for worker in (owner, other):
        worker.clock = lambda: later
    _, moved = owner.check("2", "A title that moves the owner's time on", None, later)
    deletion = owner.expire()  # the owner's sweep, before the other worker's write reached it
    assert deletion == [IndexChange(first[0].key, None)]
    _, again = other.check("3", TITLE, None, later)  # expired there: the title is shown again, and stored
    assert again[0].key == first[0].key and again[0].value
    topic += moved + again + deletion  # the other worker's write was appended before the owner's deletion
    for change in moved + again + deletion:
        owner.apply(change.key, change.value)
        other.apply(change.key, change.value)
    for worker in (owner, other):
        assert worker.check("4", TITLE, None, later + 1)[0].duplicate_of == "3"
    written = owner.expire()
    assert written == [IndexChange(again[0].key, again[0].value)]
    assert owner.expire() == []  # once
    topic += written
    starting = TitleIndex(TTL, SKEW, clock=lambda: later + 2)
    for change in topic:
        starting.load(change.key, change.value)
    starting.finish_loading()
    assert starting.check("5", TITLE, None, later + 2)[0].duplicate_of == "3"


@pytest.mark.parametrize("value", [b"\x00garbage", b""], ids=["garbage", "empty"])
def test_an_entry_a_skipped_record_came_after_in_the_topic_is_written_again_for_starting_workers(value: bytes) -> None:
    """A record no worker can read, under the key of a title the workers hold, is skipped and the entry kept; but
    once the topic is compacted the record is all it has of the key, so the owner writes the entry again."""
    worker = index()
    _, stored = worker.check("1", TITLE, None, NOW)
    key = stored[0].key
    assert worker.apply(key, value) == "invalid_value"
    assert worker.check("2", TITLE, None, NOW + 1)[0].duplicate_of == "1"
    written = [change for change in worker.expire() if change.key == key]
    assert written == [IndexChange(key, stored[0].value)]
    starting = TitleIndex(TTL, SKEW, clock=lambda: NOW + 2)
    for change_key, change_value in ((key, value), (key, written[0].value)):  # the compacted log
        starting.load(change_key, change_value)
    starting.finish_loading()
    assert starting.check("3", TITLE, None, NOW + 2)[0].duplicate_of == "1"


@pytest.mark.parametrize("event_time", [-0.001, 0.0, NOW - TTL - 10, NOW - 2 * SKEW])
def test_a_title_dated_long_ago_keeps_copies_out_from_when_it_was_seen(event_time: float) -> None:
    # A backfill, a producer that sets no timestamp (-1 ms), or one that sets an article's publication date.
    worker = index()
    worker.check("0", "A title that moves the stream time to now", None, NOW)
    _, changes = worker.check("1", TITLE, None, event_time)
    worker.expire()
    assert worker.check("2", TYPO, None, NOW + 1)[0].duplicate_of == "1"
    # For the TTL from then, less the skew the clock is allowed, like any title.
    later = NOW + TTL - SKEW + 10
    worker.clock = lambda: later
    worker.check("3", "Another title that moves the stream time on", None, later)
    assert changes[0].key in [change.key for change in worker.expire()]


def test_a_worker_s_own_changes_come_back_unchanged_and_two_writers_of_one_title_converge() -> None:
    first, second = index(), index()
    _, mine = first.check("1", TITLE, None, NOW)
    _, theirs = second.check("2", TITLE, None, NOW + 0.5)  # the same title, at once, on another worker
    assert first.apply(mine[0].key, mine[0].value) == UNCHANGED
    topic = mine + theirs  # the order the topic holds them in
    for worker in (first, second):
        for change in topic:
            worker.apply(change.key, change.value)
    assert first.check("3", TITLE, None, NOW + 1)[0].duplicate_of == "2"
    assert second.check("4", TITLE, None, NOW + 1)[0].duplicate_of == "2"


def test_a_title_two_workers_wrote_at_once_holds_one_place_in_its_buckets_so_older_titles_stay_found() -> None:
    """The other worker's value of a title this worker holds already is applied (the topic's last value wins); its
    buckets must not count the title twice, or a full bucket pushes out an older title and a typo of it goes
    through here while a restarted worker, with the same store, catches it."""
    base = "Realtime object detection with transformers"
    original, fillers = f"{base} abab", [f"{base} {'ab' * k}" for k in range(3, 10)]  # 8 titles, the same buckets
    typo = "Realtime object detecton with transformers abab"
    live, other, topic = index(), index(), []

    def unrelated(prefix: str) -> None:  # enough bucket entries for the index to merge its pending ones
        for start in range(0, 4200, 256):
            batch = [
                (f"{prefix}{n}", f"Unrelated headline {n} {prefix}", None, NOW + 9) for n in range(start, start + 256)
            ]
            topic.extend(change for _, changes in live.check_many(batch) for change in changes)

    for n, title in enumerate([original, *fillers]):
        topic += live.check(f"a{n}", title, None, NOW + n)[1]
    unrelated("x")
    theirs = other.check("b", fillers[-1], None, NOW + 8)[1]  # the newest filler, on another worker at once
    topic += theirs
    replicate(theirs, live)
    unrelated("y")
    restarted = TitleIndex(TTL, SKEW, clock=lambda: NOW)
    for change in topic:
        restarted.load(change.key, change.value)
    restarted.finish_loading()
    assert dict(restarted.store.titles.items()) == dict(live.store.titles.items())
    assert restarted.check("c1", typo, None, NOW + 10)[0].duplicate_of == "a0"
    assert live.check("c2", typo, None, NOW + 10)[0].duplicate_of == "a0"


def test_an_event_dated_far_ahead_does_not_expire_the_index() -> None:
    worker = index()
    worker.check("1", TITLE, None, NOW)
    _, future = worker.check("2", "An event from the year 2200", None, 7.3e9)
    assert worker.stream_time == NOW + SKEW
    assert worker.expire() == []
    assert worker.check("3", TITLE, None, NOW + 1)[0].duplicate_of == "1"
    # Its entry is stored at the trusted time, so it expires like the others.
    later = NOW + SKEW + TTL + 10
    worker.clock = lambda: later
    worker.check("4", "An event that moves the clock on", None, later)
    assert future[0].key in [change.key for change in worker.expire()]


@pytest.mark.parametrize("event_time", [-1.0, 0.0, float("nan"), float("inf"), 2**32 + 5.0, 1e300])
def test_any_event_time_is_taken_without_raising(event_time: float) -> None:
    worker = index()
    verdict, changes = worker.check("1", TITLE, None, event_time)
    assert verdict.duplicate_of is None and changes
    assert NOW + SKEW >= worker.stream_time >= 0


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, b"x", "missing_field"),
        (b"short", b"x", "invalid_value"),
        (bytes(8), b"", "invalid_value"),
        (bytes(8), b"\x00garbage", "invalid_value"),
        (bytes(8), b'{"json": 1}', "invalid_value"),
    ],
)
def test_a_record_of_no_known_shape_is_skipped_with_its_reason(key: bytes | None, value: bytes, reason: str) -> None:
    worker = index()
    assert worker.apply(key, value) == reason
    loading = TitleIndex(TTL, SKEW, clock=lambda: NOW)
    assert loading.load(key, value) == reason
    assert worker.entries == 0


def test_an_event_dated_far_ahead_comes_back_from_the_topic_as_written() -> None:
    worker = index(clock=NOW + 0.4)  # its entry's time is rounded up to the next whole second
    _, changes = worker.check("1", TITLE, None, 7.3e9)
    assert worker.apply(changes[0].key, changes[0].value) == UNCHANGED
    assert index(clock=NOW + 0.4).apply(changes[0].key, changes[0].value) == APPLIED


def test_an_entry_dated_past_what_any_worker_could_write_is_skipped() -> None:
    """Past the clock and twice the longest skew a worker may be set to, no worker wrote it: it would never expire."""
    writer = index(clock=NOW + 3 * 86400.0)  # a clock days ahead
    _, changes = writer.check("1", TITLE, None, NOW + 3 * 86400.0)
    assert index().apply(changes[0].key, changes[0].value) == "invalid_value"
    assert index().load(changes[0].key, changes[0].value) == "invalid_value"


def test_a_worker_set_to_a_larger_skew_is_believed_by_one_set_to_a_smaller() -> None:
    """Each worker clamps event times by its own TAGGER_MAX_CLOCK_SKEW_SECONDS: a reader that judged another's entries
    by its own smaller skew skipped them, there and after a restart, and their copies were shown."""
    writer = TitleIndex(TTL, 3600.0, clock=lambda: NOW)
    writer.finish_loading()
    _, changes = writer.check("1", TITLE, None, NOW + 1800.0)  # half an hour ahead: within the writer's skew
    reader = index()
    assert reader.apply(changes[0].key, changes[0].value) == APPLIED
    assert reader.check("2", TITLE, None, NOW + 3.0)[0].duplicate_of == "1"
    assert reader.check("3", TYPO, None, NOW + 3.0)[0].duplicate_of == "1"
    restarted = TitleIndex(TTL, SKEW, clock=lambda: NOW)
    assert restarted.load(changes[0].key, changes[0].value) is None
    restarted.finish_loading()
    assert restarted.check("2", TITLE, None, NOW + 3.0)[0].duplicate_of == "1"
    assert reader.stream_time <= NOW + SKEW  # trusted no further than the reader's own clock


def test_workers_whose_clocks_differ_by_less_than_the_skew_take_each_other_s_entries() -> None:
    writer = index(clock=NOW + 2.0)  # two seconds ahead of the reader's
    _, changes = writer.check("1", TITLE, None, NOW + 10 * SKEW)  # dated ahead: stored at its clock and skew
    reader = index()
    assert reader.apply(changes[0].key, changes[0].value) == APPLIED
    assert reader.check("2", TYPO, None, NOW)[0].duplicate_of == "1"
    assert reader.stream_time <= NOW + SKEW  # trusted no further than the reader's own clock


def test_random_bytes_never_raise() -> None:
    worker = index()
    for length, fill in itertools.product(range(0, 70, 7), range(0, 256, 37)):
        worker.apply(bytes([fill]) * 8, bytes([fill ^ 0x80]) + bytes([fill]) * length)
        worker.apply(bytes([fill]) * 8, bytes([fill]) * length)
    worker.check("1", TITLE, None, NOW)


def test_a_readable_entry_under_a_key_of_another_length_is_skipped_and_never_raises() -> None:
    """The topic is open to any writer: a record whose value is a real entry but whose key is not a title's 8-byte
    digest is skipped, while following and while loading, and changes nothing."""
    _, [change] = index().check("1", TITLE, None, NOW)
    assert change.value is not None
    for key in (change.key[:7], change.key + b"\x00", b""):
        worker = index()
        assert worker.apply(key, change.value) == "invalid_value"
        assert worker.entries == 0
        assert worker.check("2", TITLE, None, NOW + 1)[0].duplicate_of is None
        loading = TitleIndex(TTL, SKEW, clock=lambda: NOW)
        assert loading.load(key, change.value) == "invalid_value"
        loading.finish_loading()
        assert loading.entries == 0


def test_an_entry_of_a_worker_set_to_the_longest_skew_with_its_clock_ahead_is_believed() -> None:
    """A worker whose clock is an hour ahead, set to the longest skew allowed, dates an event far ahead at its clock
    plus a day: within twice the longest skew of the reader's clock, its entry is taken and its copies caught."""
    writer = TitleIndex(TTL, LONGEST_CLOCK_SKEW_SECONDS, clock=lambda: NOW + 3600.0)
    writer.finish_loading()
    _, [change] = writer.check("1", TITLE, None, NOW + 10 * 86400.0)
    reader = index()
    assert reader.apply(change.key, change.value) == APPLIED
    assert reader.check("2", TYPO, None, NOW + 1)[0].duplicate_of == "1"
    starting = TitleIndex(TTL, SKEW, clock=lambda: NOW)
    assert starting.load(change.key, change.value) is None
    starting.finish_loading()
    assert starting.check("3", TYPO, None, NOW + 1)[0].duplicate_of == "1"


def test_an_entry_dated_further_back_than_any_two_workers_clocks_differ_is_skipped() -> None:
    """Two and a half days before the fresh entry held: more than two of the longest skews, so no worker wrote it;
    applied, it would expire the title days early and let its copies through."""
    worker = index()
    _, [change] = worker.check("1", TITLE, None, NOW)
    assert change.value is not None
    when = int(NOW - 2.5 * 86400.0)
    backdated = change.value[:1] + when.to_bytes(4, "big") + change.value[5:]
    assert worker.apply(change.key, backdated) == "invalid_value"
    # Past the backdated entry's TTL, but within the real one's: the title is still known.
    later = NOW + TTL - 86400.0
    worker.clock = lambda: later
    worker.check("2", "A title that moves the stream time on", None, later)
    worker.expire()
    assert worker.check("3", TYPO, None, later)[0].duplicate_of == "1"


def test_a_loading_index_counts_the_entries_it_loaded() -> None:
    """The entries gauge is read while a starting worker loads the topic (minutes, for a large index)."""
    topic = [change for n in range(3) for change in index().check(str(n), f"{TITLE} part {n}", None, NOW)[1]]
    loading = TitleIndex(TTL, SKEW, clock=lambda: NOW)
    assert loading.entries == 0
    for change in topic:
        loading.load(change.key, change.value)
    assert not loading.loaded and loading.entries == 3
    loading.finish_loading()
    assert loading.entries == 3


def test_a_sweep_keeps_the_displaced_entry_of_a_fresh_title_for_a_later_replay() -> None:
    """The copy's entry is stored first, then the original's worker stores its own under the same key and crashes
    before its second look. Sweeps run every minute: one before the replay must not forget the copy's entry, or the
    replay is shown again."""
    first, later = ("1", TITLE, SECOND_LOOK_DESCRIPTION, NOW), ("2", TITLE.upper(), SECOND_LOOK_DESCRIPTION, NOW + 1)
    _, [claim_copy] = index().check(*later)
    _, [claim_original] = index().check(*first)
    worker = index()
    for change in (claim_copy, claim_original):
        assert worker.apply(change.key, change.value) == APPLIED
    worker.clock = lambda: NOW + 120.0
    worker.check("3", "A title that moves the stream time on", None, NOW + 120.0)
    worker.expire()
    verdict, changes = worker.check(*first)
    assert (verdict.duplicate_of, verdict.match) == ("2", "exact")
    assert changes == [claim_copy]


def test_a_near_copy_s_entry_stays_until_its_own_time_on_a_worker_that_applied_its_key_s_deletion() -> None:
    """A worker that deleted a title by applying its owner's deletion kept the title's expiry record. A near copy's
    entry written under the key afterwards was deleted when that record came up, before its own time, while the
    owner kept it: the two stores differed."""
    now = [NOW]
    owner, other = (TitleIndex(TTL, SKEW, clock=lambda: now[0]) for _ in range(2))
    owner.finish_loading()
    other.finish_loading()
    _, [stored] = owner.check("x", TITLE, None, NOW)
    replicate([stored], other)
    now[0] = NOW + TTL + 10
    for worker in (owner, other):
        worker.check(f"later-{id(worker)}", "An unrelated title about graph databases", None, now[0])
    deleted = [change for change in owner.expire() if change.key == stored.key]
    assert deleted == [IndexChange(stored.key, None)]
    replicate(deleted, other)
    copy = copy_value(CopyEntry("y", now[0] + 60.0, ref_of_digest(bytes(8)), 0.9))
    for worker in (owner, other):
        assert worker.apply(stored.key, copy) == APPLIED
        worker.expire()
    assert owner.store.titles.get(stored.key) == other.store.titles.get(stored.key) == copy
