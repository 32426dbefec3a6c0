"""The second look: two workers that checked an original and its copy at the same time agree, by the index topic's
order, on which one is shown, and leave the index as one check at a time would have."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.structs import RecordMetadata, TopicPartition

from stream_app.dedupe import DedupeVerdict
from stream_app.title_index.follower import INDEX_PARTITION, IndexFollower, Watch, Watched
from stream_app.title_index.index import APPLIED, TitleIndex
from stream_app.title_index.second_look import SecondLook, Window, stored_from, through_copies
from stream_app.title_index.store import IndexChange
from tests.unit.title_index.test_barrier import BrokerStandIn

TTL = 30 * 86400.0
NOW = 1_800_000_000.0
SKEW = 300.0
TITLE = "Realtime object detection with transformers"
TYPO = "Realtime object detecton with transformers"
DESCRIPTION = "A detector that runs on video streams in real time."


def index() -> TitleIndex:
    made = TitleIndex(TTL, SKEW, clock=lambda: NOW)
    made.finish_loading()
    return made


class Topic:
    """The index topic's one partition, and each worker's follower applying it in order."""

    def __init__(self) -> None:
        self.log: list[IndexChange] = []

    def write(self, changes: list[IndexChange]) -> None:
        self.log += changes

    def follow(self, worker: TitleIndex, start: int = 0) -> list[Watched]:
        """Apply the log from ``start`` on ``worker``, as its follower would, and what a watch would keep."""
        return [
            Watched(offset, change.key, change.value, worker.apply(change.key, change.value) == APPLIED)
            for offset, change in enumerate(self.log[start:], start)
        ]


def second_look(
    worker: TitleIndex, watched: list[Watched], event: tuple[str, str, str | None, float], claim: IndexChange
) -> tuple[str | None, list[IndexChange]]:
    assert claim.value is not None
    window = Window(watched, {(claim.key, claim.value)})
    earlier = worker.earlier_entries(window.others)
    again = worker.recheck(event, claim.key, earlier, window.position(claim.key, claim.value))
    return (None, []) if again is None else (again[0].duplicate_of, again[1])


@pytest.mark.parametrize(("copy", "match"), [(TITLE.upper(), "exact"), (TYPO, "near")])
@pytest.mark.parametrize("first_stored", ["original", "copy"])
def test_of_two_titles_checked_at_once_on_two_workers_the_one_stored_first_is_shown(
    copy: str, match: str, first_stored: str
) -> None:
    topic, a, b = Topic(), index(), index()
    original_event = ("1", TITLE, DESCRIPTION, NOW)
    copy_event = ("2", copy, DESCRIPTION, NOW + 60)
    # Each checks before the other's change reaches it: both titles look new.
    verdict_a, [claim_a] = a.check(*original_event)
    verdict_b, [claim_b] = b.check(*copy_event)
    assert verdict_a.duplicate_of is None and verdict_b.duplicate_of is None
    topic.write([claim_a, claim_b] if first_stored == "original" else [claim_b, claim_a])
    watched_a, watched_b = topic.follow(a), topic.follow(b)

    found_a, corrected_a = second_look(a, watched_a, original_event, claim_a)
    found_b, corrected_b = second_look(b, watched_b, copy_event, claim_b)

    if first_stored == "original":
        assert (found_a, found_b) == (None, "1")
    else:
        assert (found_a, found_b) == ("2", None)
    # Each worker applies the other's correction: they end with the same entries, and a third copy, checked
    # later on either, is a copy of the title that was shown.
    start = len(topic.log)
    topic.write(corrected_a + corrected_b)
    topic.follow(a, start)
    topic.follow(b, start)
    assert dict(a.store.titles.items()) == dict(b.store.titles.items())
    shown = "1" if first_stored == "original" else "2"
    for worker in (a, b):
        verdict, _ = worker.check("3", TITLE.lower(), DESCRIPTION, NOW + 120)
        assert verdict.duplicate_of == shown and verdict.match in ("exact", "near")


def test_a_copy_found_by_the_second_look_takes_the_verdict_one_check_at_a_time_gives() -> None:
    """Exact: the original's id; near: the original's id and the similarity a check would have found."""
    alone = index()
    alone.check("1", TITLE, DESCRIPTION, NOW)
    expected, _ = alone.check("2", TYPO, DESCRIPTION, NOW + 60)
    topic, a, b = Topic(), index(), index()
    _, [claim_a] = a.check("1", TITLE, DESCRIPTION, NOW)
    _, [claim_b] = b.check("2", TYPO, DESCRIPTION, NOW + 60)
    topic.write([claim_a, claim_b])
    found = second_look(b, topic.follow(b), ("2", TYPO, DESCRIPTION, NOW + 60), claim_b)
    assert found[0] == expected.duplicate_of
    copy = b.store.titles[claim_b.key]
    assert found[1] == [IndexChange(claim_b.key, copy)] and copy != claim_b.value
    verdict, _ = b.check("2", TYPO, DESCRIPTION, NOW + 60)  # the replayed event: judged as a check judged it
    assert verdict == expected


def test_entries_of_its_own_event_stale_ones_and_other_titles_do_not_make_a_title_a_copy() -> None:
    worker, other = index(), index()
    _, [own] = worker.check("1", TITLE, DESCRIPTION, NOW)
    _, [replayed] = index().check("1", TITLE, DESCRIPTION, NOW)  # the same event, stored by another worker
    _, [unrelated] = other.check("7", "Sentiment analysis of tweets with BERT", None, NOW)
    stale_worker = TitleIndex(TTL, SKEW, clock=lambda: NOW - 2 * TTL)
    stale_worker.finish_loading()
    _, [stale] = stale_worker.check("8", TITLE, DESCRIPTION, NOW - 2 * TTL)
    for change in (replayed, unrelated, stale):
        assert change.value is not None
        earlier = worker.earlier_entries([(0, change.key, change.value)])
        assert worker.recheck(("1", TITLE, DESCRIPTION, NOW), own.key, earlier, 1) is None
    assert own.value is not None
    assert worker.store.titles[own.key] == own.value  # left as it was


def test_a_window_keeps_other_writers_entries_and_places_the_batch_s_own() -> None:
    claim = (b"c" * 8, b"claim")
    mine = (b"m" * 8, b"mine")
    watched = [
        Watched(1, b"a" * 8, b"other", True),
        Watched(2, b"u" * 8, b"unchanged", False),  # held already: no news
        Watched(3, *mine, True),  # another title of the same batch
        Watched(4, b"d" * 8, None, True),  # a deletion
        Watched(5, *claim, False),
        Watched(6, b"e" * 8, b"later", True),
    ]
    window = Window(watched, {claim, mine})
    assert window.others == [(0, b"a" * 8, b"other"), (5, b"e" * 8, b"later")]
    assert window.position(*claim) == 4
    # The claim not reached in time: every entry watched counts as before it.
    assert window.position(b"x" * 8, b"missing") == len(watched)


def test_only_entries_placed_before_the_title_s_own_count() -> None:
    worker, other = index(), index()
    _, [claim] = worker.check("2", TITLE.upper(), DESCRIPTION, NOW + 60)
    _, [original] = other.check("1", TITLE, DESCRIPTION, NOW)
    assert original.value is not None
    earlier = worker.earlier_entries([(3, original.key, original.value)])
    event = ("2", TITLE.upper(), DESCRIPTION, NOW + 60)
    assert worker.recheck(event, claim.key, earlier, 3) is None
    again = worker.recheck(event, claim.key, earlier, 4)
    assert again is not None and (again[0].duplicate_of, again[0].match) == ("1", "exact")
    assert again[1] == [original]  # the original's entry back under the key, for every worker to apply last


def test_a_watch_returns_once_every_awaited_record_was_applied() -> None:
    async def scenario() -> None:
        watch = Watch()
        watch.add(Watched(1, b"k1", b"v1", False))
        await asyncio.wait_for(watch.arrival([(b"k1", b"v1")]), 1)  # applied before it was awaited
        waiting = asyncio.ensure_future(watch.arrival([(b"k2", b"v2"), (b"k3", b"v3")]))
        watch.add(Watched(2, b"k2", b"v2", False))
        await asyncio.sleep(0)
        assert not waiting.done()
        watch.add(Watched(3, b"k3", b"other", True))
        await asyncio.sleep(0)
        assert not waiting.done()
        watch.add(Watched(4, b"k3", b"v3", False))
        await asyncio.wait_for(waiting, 1)
        assert [record.offset for record in watch.records] == [1, 2, 3, 4]

    asyncio.run(scenario())


def test_a_second_look_whose_watch_overflowed_is_counted_as_given_up_and_one_that_saw_its_claims_is_not() -> None:
    follower = IndexFollower(index(), "index", {}, on_skip=lambda reason: None)
    given_up: list[None] = []
    look = SecondLook(follower, on_timeout=lambda: given_up.append(None), timeout_seconds=5.0)

    async def scenario() -> tuple[int, int]:
        overflowed = Watch(limit=2)
        for offset in range(3):  # the batch's own claim is not among those kept
            overflowed.add(Watched(offset, b"k%d" % offset, b"v", True))
        kept = await look.settle(overflowed, [(b"own", b"claim")])
        seen = Watch(limit=2)
        seen.add(Watched(0, b"own", b"claim", False))
        await look.settle(seen, [(b"own", b"claim")])
        return len(kept), len(given_up)

    assert asyncio.run(scenario()) == (2, 1)


@pytest.mark.parametrize(
    ("applied", "kept", "overflowed", "settled_at_once"),
    [
        (10, [Watched(8, b"mine", b"last batch", False)], False, True),  # only its own records before its claims
        (10, [], False, True),
        (9, [], False, False),  # a record before its claims not applied yet: it may be another writer's
        (10, [Watched(8, b"k", b"another writer's", True)], False, False),  # judged as before, once claims are back
        (10, [], True, False),
    ],
)
def test_a_second_look_waits_for_its_claims_only_when_a_record_before_them_may_be_another_writer_s(
    applied: int, kept: list[Watched], overflowed: bool, settled_at_once: bool
) -> None:
    follower = BrokerStandIn()
    follower.applied = applied
    given_up: list[None] = []
    look = SecondLook(follower, on_timeout=lambda: given_up.append(None), timeout_seconds=0.2)

    async def scenario() -> list[Watched]:
        watch = look.watch()
        for record in kept:
            watch.add(record)
        watch.overflowed = overflowed
        return await look.settle(watch, [(b"own", b"claim")], stored_from=10)  # the claim never comes back

    assert asyncio.run(scenario()) == kept
    assert given_up == ([] if settled_at_once else [None])
    assert follower._watches == []  # closed either way


def test_claims_are_placed_by_the_start_of_their_last_record_batch_on_the_index_partition() -> None:
    def delivered(topic: str, partition: int, offset: int) -> RecordMetadata:
        return RecordMetadata(topic, partition, TopicPartition(topic, partition), offset, -1, 0, 0)

    index_partition = ("index", INDEX_PARTITION)
    assert stored_from([delivered(*index_partition, 40), delivered(*index_partition, 52)], "index") == 52
    assert stored_from([], "index") is None
    assert stored_from([delivered(*index_partition, 40), None], "index") is None  # acks=0: no offset
    assert stored_from([delivered("index", INDEX_PARTITION + 1, 40)], "index") is None
    assert stored_from([delivered("tagged", INDEX_PARTITION, 40)], "index") is None
    assert stored_from([delivered(*index_partition, -1)], "index") is None


def test_a_near_copy_stored_under_a_key_another_worker_stored_a_title_under_first_becomes_its_exact_copy() -> None:
    """The check found the event a near copy of a title of its own batch, and stored that under the event's key;
    another worker had stored the event's very title under that key first. One check at a time would have found
    an exact copy of it, and the key keeps that worker's title, whatever comes of the first title."""
    topic, a, b = Topic(), index(), index()
    _, [original] = a.check("1", TITLE, DESCRIPTION, NOW)
    b.check("2", TYPO, DESCRIPTION, NOW + 30)  # new here: the batch's first title
    verdict, [near] = b.check("3", TITLE, DESCRIPTION, NOW + 60)
    assert (verdict.duplicate_of, verdict.match) == ("2", "near") and near.key == original.key
    topic.write([original, near])
    watched = topic.follow(b)
    window = Window(watched, {(near.key, near.value)})
    assert near.value is not None
    earlier, before = b.earlier_entries(window.others), window.position(near.key, near.value)
    again = b.recheck(("3", TITLE, DESCRIPTION, NOW + 60), near.key, earlier, before)
    assert again is not None and (again[0].duplicate_of, again[0].match) == ("1", "exact")
    assert again[1] == [original] and b.store.titles[original.key] == original.value


def test_verdicts_that_named_an_event_found_a_copy_name_its_original() -> None:
    ids = ["x", "c-exact", "c-near", "y", "d"]
    verdicts = [
        DedupeVerdict("kx", None, None, 0.0),
        DedupeVerdict("kx", "x", "exact", 1.0),
        DedupeVerdict("kc", "x", "near", 0.8),
        DedupeVerdict("ky", None, None, 0.0),
        DedupeVerdict("kd", "elsewhere", "exact", 1.0),
    ]
    found = {0: DedupeVerdict("kx", "o", "near", 0.9)}
    passed = through_copies(ids, verdicts, found)
    assert passed == {
        0: found[0],
        1: DedupeVerdict("kx", "o", "near", 0.9),
        2: DedupeVerdict("kc", "o", "near", 0.8),
    }
    exact = {0: DedupeVerdict("kx", "o", "exact", 1.0)}
    assert through_copies(ids, verdicts, exact)[1] == DedupeVerdict("kx", "o", "exact", 1.0)
    assert through_copies(ids, verdicts, {}) == {}


def loaded_from(topic: Topic) -> TitleIndex:
    """A worker started after ``topic`` was written: it loads the log, then checks."""
    started = TitleIndex(TTL, SKEW, clock=lambda: NOW)
    for change in topic.log:
        assert started.load(change.key, change.value) is None
    started.finish_loading()
    return started


@pytest.mark.parametrize("replayed_by", ["a worker started after the crash", "the worker that stored first", "a third"])
def test_a_title_replayed_after_a_crash_before_its_second_look_is_a_copy_of_the_one_stored_before_it(
    replayed_by: str,
) -> None:
    """Two workers check a title and its exact copy at once; the copy's entry is stored first. The original's worker
    stores its own entry, then crashes before its second look and its outputs: the key's last record is its entry,
    and the copy was shown. Its event, replayed on any worker, is the copy's copy, and the copy's entry goes back."""
    topic, a, b = Topic(), index(), index()
    original, copy = ("1", TITLE, DESCRIPTION, NOW), ("2", TITLE.upper(), DESCRIPTION, NOW + 1)
    _, [claim_b] = b.check(*copy)
    _, [claim_a] = a.check(*original)
    topic.write([claim_b, claim_a])  # then a crashes
    if replayed_by == "a worker started after the crash":
        worker = loaded_from(topic)
    else:
        worker = b if replayed_by == "the worker that stored first" else index()
        topic.follow(worker)
    assert worker.store.titles[claim_a.key] == claim_a.value  # the topic's last record for the key

    verdict, changes = worker.check(*original)

    assert (verdict.duplicate_of, verdict.match) == ("2", "exact")
    assert changes == [claim_b] and worker.store.titles[claim_b.key] == claim_b.value
    assert worker.replayed_copies == 1
    assert worker.check(*copy)[0].duplicate_of is None  # the copy's own replay: still the title shown


def test_a_worker_whose_own_entry_was_on_its_way_keeps_the_topic_s_order_for_later_replays() -> None:
    """The copy's entry reaches the original's worker before its own comes back: the entry it held then was not
    the topic's, so the copy's entry displaced nothing. After the second look, a replay of either event keeps the
    verdict the second look gave, on both workers."""
    topic, a, b = Topic(), index(), index()
    original, copy = ("1", TITLE, DESCRIPTION, NOW), ("2", TITLE.upper(), DESCRIPTION, NOW + 1)
    _, [claim_b] = b.check(*copy)
    _, [claim_a] = a.check(*original)
    topic.write([claim_b, claim_a])
    found, corrected = second_look(a, topic.follow(a), original, claim_a)
    assert found == "2"
    start = len(topic.log)
    topic.write(corrected)
    topic.follow(a, start)
    topic.follow(b)
    for worker in (a, b):
        assert worker.check(*copy)[0].duplicate_of is None
        assert worker.check(*original)[0].duplicate_of == "2"


def test_a_title_stored_again_after_the_first_entry_expired_stays_new_on_replay() -> None:
    topic, a = Topic(), index()
    stale_worker = TitleIndex(TTL, SKEW, clock=lambda: NOW - 2 * TTL)
    stale_worker.finish_loading()
    _, [expired] = stale_worker.check("2", TITLE.upper(), DESCRIPTION, NOW - 2 * TTL)
    _, [claim_a] = a.check("1", TITLE, DESCRIPTION, NOW)
    topic.write([expired, claim_a])
    started, running = loaded_from(topic), index()
    topic.follow(running)
    for worker in (started, running):
        verdict, changes = worker.check("1", TITLE, DESCRIPTION, NOW)
        assert verdict.duplicate_of is None and changes == []


def test_a_worker_remembers_a_bounded_number_of_displaced_entries_the_newest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The index topic is open to any writer: records that keep giving keys to other events must not grow a worker's
    memory without end. Past the bound the oldest are forgotten, and their replays judged as before this memory."""
    monkeypatch.setattr("stream_app.title_index.index.MAX_REMEMBERED_KEYS", 4)
    topic, worker = Topic(), index()
    titles = [f"{TITLE} part {number}" for number in range(10)]
    for number, title in enumerate(titles):
        _, [first] = index().check(f"first-{number}", title.upper(), None, NOW)
        _, [later] = index().check(f"later-{number}", title, None, NOW + 1)
        topic.write([first, later])
    topic.follow(worker)
    replayed = [
        worker.check(f"later-{number}", title, None, NOW + 1)[0].duplicate_of for number, title in enumerate(titles)
    ]
    assert replayed == [None] * 6 + [f"first-{number}" for number in range(6, 10)]


def replayer(topic: Topic, replayed_by: str, first: TitleIndex) -> TitleIndex:
    """The worker that replays the crashed worker's batch."""
    if replayed_by == "a worker started after the crash":
        return loaded_from(topic)
    worker = first if replayed_by == "the worker that stored first" else index()
    topic.follow(worker)
    return worker


@pytest.mark.parametrize("replayed_by", ["a worker started after the crash", "the worker that stored first", "a third"])
def test_a_near_copy_replayed_after_a_crash_before_its_second_look_is_judged_as_one_check_at_a_time_would(
    replayed_by: str,
) -> None:
    """As above, with a copy one typo from the original: its entry is under another key, and the topic's order of
    the two records decides. The replay gets the verdict one check at a time gives, and its entry becomes a near
    copy's."""
    alone = index()
    alone.check("2", TITLE, DESCRIPTION, NOW)
    expected, _ = alone.check("1", TYPO, DESCRIPTION, NOW + 1)
    assert (expected.duplicate_of, expected.match) == ("2", "near")
    topic, a, b = Topic(), index(), index()
    original, copy = ("2", TITLE, DESCRIPTION, NOW), ("1", TYPO, DESCRIPTION, NOW + 1)
    _, [claim_b] = b.check(*original)
    _, [claim_a] = a.check(*copy)
    topic.write([claim_b, claim_a])  # then a crashes
    worker = replayer(topic, replayed_by, b)

    verdict, changes = worker.check(*copy)

    assert verdict == expected and worker.replayed_copies == 1
    assert [change.key for change in changes] == [claim_a.key] and changes[0].value != claim_a.value
    assert worker.store.titles[claim_a.key] == changes[0].value
    assert worker.check(*original)[0].duplicate_of is None


def test_of_two_near_copies_both_replayed_the_one_stored_first_is_shown() -> None:
    """Both workers crashed before their second looks: each replay is judged by the topic's order, whichever comes
    first, so exactly one of the two is shown."""
    first_event, second_event = ("1", TYPO, DESCRIPTION, NOW + 1), ("2", TITLE, DESCRIPTION, NOW)
    for replay_order in ([first_event, second_event], [second_event, first_event]):
        topic = Topic()
        _, [first] = index().check(*first_event)
        _, [second] = index().check(*second_event)
        topic.write([first, second])
        worker = index()
        topic.follow(worker)
        verdicts = {event[0]: worker.check(*event)[0].duplicate_of for event in replay_order}
        assert verdicts == {"1": None, "2": "1"}


def test_a_replay_whose_own_record_is_older_than_the_order_kept_stays_new(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the records whose order a worker keeps it cannot tell what came before the replayed title, and leaves
    it new; an entry older than them came before one still among them."""
    monkeypatch.setattr("stream_app.title_index.order.ORDER_KEPT", 4)
    others = [
        index().check(str(n), f"Unrelated project number {n} on graph learning", None, NOW)[1][0] for n in range(6)
    ]
    original, copy = ("2", TITLE, DESCRIPTION, NOW), ("1", TYPO, DESCRIPTION, NOW + 1)
    _, [claim_original] = index().check(*original)
    _, [claim_copy] = index().check(*copy)
    kept, forgotten = Topic(), Topic()
    kept.write([claim_original, *others[:3], claim_copy])  # the copy's record among the last 4
    forgotten.write([claim_original, claim_copy, *others[:4]])  # both older than the last 4
    assert loaded_from(kept).check(*copy)[0].duplicate_of == "2"
    assert loaded_from(forgotten).check(*copy)[0].duplicate_of is None


def test_an_event_sent_again_with_the_title_of_a_copy_of_it_is_never_a_copy_of_itself() -> None:
    """Event 1 shown with a typo, event 2 (its title correct) a near copy of it, then event 1 again with the typo
    fixed: the copy's entry under the corrected title's key named event 1, and event 1 went to the duplicates as
    a copy of itself, where without event 2 it was tagged again."""
    worker = index()
    first, _ = worker.check("1", TYPO, DESCRIPTION, NOW)
    copy, [stored] = worker.check("2", TITLE, DESCRIPTION, NOW + 60)
    assert first.duplicate_of is None and copy.duplicate_of == "1"
    again, changes = worker.check("1", TITLE, DESCRIPTION, NOW + 120)
    assert again.duplicate_of is None and changes == []
    later, _ = worker.check("3", TITLE, DESCRIPTION, NOW + 180)
    assert later.duplicate_of == "1"
    # The same on a worker that finds the copy's entry in its second look, stored by another worker first.
    other = index()
    _, [own] = other.check("1", TITLE, DESCRIPTION, NOW + 120)
    assert own.key == stored.key and stored.value is not None
    earlier = other.earlier_entries([(0, stored.key, stored.value)])
    assert other.recheck(("1", TITLE, DESCRIPTION, NOW + 120), own.key, earlier, 1) is None


def test_an_event_met_twice_in_a_batch_is_a_copy_both_times_when_its_second_look_finds_one_first() -> None:
    """An upstream's retry puts one event twice in a batch while another worker stores a copy of it first. The
    second look made the first time a copy; the second time had met its own entry, stored nothing, and stayed
    shown, beside the other worker's copy: the item was shown twice."""
    topic, a, b = Topic(), index(), index()
    twice = [("1", TITLE, DESCRIPTION, NOW + 1), ("1", TITLE, DESCRIPTION, NOW + 1)]
    checks_a = a.check_many(twice)
    assert [verdict.duplicate_of for verdict, _ in checks_a] == [None, None]
    _, [claim_b] = b.check("2", TITLE.upper(), DESCRIPTION, NOW)
    (claim_a,) = [change for _, made in checks_a for change in made]
    topic.write([claim_b, claim_a])
    watched = topic.follow(a)
    found, _ = second_look(a, watched, twice[0], claim_a)
    assert found == "2"
    verdicts = [verdict for verdict, _ in checks_a]
    copy = DedupeVerdict(verdicts[0].dedupe_key, "2", "exact", 1.0)
    assert through_copies(["1", "1"], verdicts, {0: copy}) == {0: copy, 1: copy}
    # The same id with another title is another item: it keeps its own verdict.
    other = [verdicts[0], DedupeVerdict("k-other", None, None, 0.0)]
    assert through_copies(["1", "1"], other, {0: copy}) == {0: copy}


def test_an_event_on_two_workers_at_once_with_a_copy_of_it_leaves_its_title_in_the_index() -> None:
    """An upstream's retry sends event 12 to two workers at once. A's batch also holds 10, the title 12 is a typo
    of, so A stores 12 as a near copy of 10; B stores 12 as a title first. A's second look made 10 a copy of 12,
    but left its copy entry for 12 over B's title: neither key held a title, and a later copy was shown."""
    topic, a, b = Topic(), index(), index()
    batch = [("10", TITLE, DESCRIPTION, NOW), ("12", TYPO, DESCRIPTION, NOW + 1)]
    checks = a.check_many(batch)
    assert [verdict.duplicate_of for verdict, _ in checks] == [None, "10"]
    _, [stored_b] = b.check("12", TYPO, DESCRIPTION, NOW + 1)
    claims = [made[-1] for _, made in checks]
    topic.write([stored_b, *claims])
    watched_a = topic.follow(a)
    topic.follow(b)
    found_10, corrected_10 = second_look(a, watched_a, batch[0], claims[0])
    found_12, corrected_12 = second_look(a, watched_a, batch[1], claims[1])
    assert (found_10, found_12) == ("12", "12")  # 12 was shown by B: this delivery of it is its copy
    assert corrected_12 == [stored_b]
    start = len(topic.log)
    topic.write(corrected_10 + corrected_12)
    topic.follow(a, start)
    topic.follow(b, start)
    assert dict(a.store.titles.items()) == dict(b.store.titles.items())
    for worker in (a, b):
        later, _ = worker.check("30", TITLE.upper(), DESCRIPTION, NOW + 60)
        assert later.duplicate_of == "12"


@pytest.mark.parametrize("then", ["the copy's replay", "the copy's second look"])
def test_the_title_stored_first_and_replayed_first_after_a_crash_is_shown_and_its_copy_is_not(then: str) -> None:
    """Two workers check a title and its exact copy at once; the title's entry is stored first, then the copy's.
    The title's worker crashes before its second look, and its replay comes while the key's last record is still
    the copy's. The replay took it for an ordinary copy of the copy, and then the copy was found a copy of it, by
    its own replay or its second look: neither was shown."""
    topic, a, b = Topic(), index(), index()
    original, copy = ("1", TITLE, DESCRIPTION, NOW), ("3", TITLE.upper(), DESCRIPTION, NOW + 1)
    _, [claim_a] = a.check(*original)
    _, [claim_b] = b.check(*copy)
    topic.write([claim_a, claim_b])  # then a crashes
    replaying = loaded_from(topic)
    verdict, changes = replaying.check(*original)
    assert verdict.duplicate_of is None
    assert changes == [claim_a] and replaying.store.titles[claim_a.key] == claim_a.value
    topic.write(changes)
    watched = topic.follow(b)
    if then == "the copy's replay":
        assert replaying.check(*copy)[0].duplicate_of == "1"  # b crashed too
    else:
        found, _ = second_look(b, watched, copy, claim_b)
        assert found == "1"
    for worker in (replaying, b):
        assert worker.check("4", TITLE.lower(), DESCRIPTION, NOW + 60)[0].duplicate_of == "1"
